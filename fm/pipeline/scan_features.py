"""The report model's view of a session: its scans prepared for the encoder and, when the encoder
reads it (encoders.segmentation_grid), the session's segmentation beside them."""

from __future__ import annotations

from fm.core.io import Volume
from fm.core.labels import LabelMap
from fm.lm.loading import model_input


def session_features(report_model, scans: Volume | list[Volume], label_map: LabelMap | None = None):
    """report_model.scan_features of a session. A model whose encoder reads the segmentation gets
    `label_map`, or, when none is given, the default segmenter's (as `fm report` segments)."""
    if report_model.reads_segmentation and label_map is None:
        from fm.pipeline.report_pipeline import ReportPipeline

        label_map = ReportPipeline.from_pretrained()(scans).label_map
    return report_model.scan_features(model_input(scans, report_model), label_map)
