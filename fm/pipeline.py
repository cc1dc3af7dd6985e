"""ReportPipeline: the path of one scan in one call, load -> preprocess -> segment -> resample ->
measure -> report, each stage timed and announced to an optional progress callback.

    pipeline = ReportPipeline.from_pretrained()          # the bundled default segmenter
    result = pipeline("scan.nii.gz")                     # or a Volume
    result.report.to_markdown(); result.segmentation.labels  # labels on the scan's own grid
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Callable

import numpy as np
import torch

from fm import __version__
from fm.io import Volume, load_volume
from fm.measure import measure
from fm.report import Report, ReportProvenance
from heads.etta import etta_logits
from heads.pretrained import ModelInfo, load_segmenter
from heads.segmentation import Segmentation, Segmenter

#: Timed stages; "report" (assembling text from the findings, milliseconds) is announced, not timed.
STAGES = ("load", "preprocess", "segment", "resample", "measure", "report")
_SOFTWARE = ("torch", "monai", "numpy", "nibabel")


@dataclasses.dataclass
class PipelineResult:
    report: Report
    volume: Volume
    segmentation: Segmentation


class ReportPipeline:
    def __init__(self, segmenter: Segmenter, model: ModelInfo, etta: bool = False, etta_steps: int = 3):
        self.segmenter, self.model, self.etta, self.etta_steps = segmenter, model, etta, etta_steps

    @classmethod
    def from_pretrained(cls, model=None, encoder: str | None = None, etta: bool = False, **overrides) -> "ReportPipeline":
        """model/encoder as heads.pretrained.load_segmenter: None is the bundled default."""
        segmenter, info = load_segmenter(model, encoder, **overrides)
        return cls(segmenter, info, etta=etta)

    def __call__(
        self,
        scan: str | os.PathLike | Volume,
        progress: Callable[[str], None] | None = None,
        load: Callable[..., Volume] = load_volume,
        **load_options,
    ) -> PipelineResult:
        """`load(scan, **load_options)` reads a path (fm.io.load_volume: frame, series, modality,
        max_voxels). `progress(stage)` is called as each stage starts."""
        timings: dict[str, float] = {}

        def stage(name):
            if progress is not None:
                progress(name)
            timings[name] = time.perf_counter()

        def done(name):
            timings[name] = round(time.perf_counter() - timings[name], 3)

        stage("load")
        volume = scan if isinstance(scan, Volume) else load(scan, **load_options)
        done("load")
        stage("preprocess")
        prepared = self.segmenter.preprocess(volume)
        done("preprocess")
        stage("segment")
        logits = self._logits(prepared.tensor)
        done("segment")
        stage("resample")
        segmentation = self.segmenter.to_volume(logits, prepared, volume)
        del logits
        done("resample")
        stage("measure")
        findings = measure(
            segmentation.labels, volume, segmentation.label_set, probabilities=segmentation.probabilities, source=self.model.model_id
        )
        done("measure")
        if progress is not None:
            progress("report")
        network_spacing = tuple(float(v) for v in np.linalg.norm(prepared.affine[:3, :3], axis=0))
        provenance = ReportProvenance(
            input_file=volume.source.path,
            input_format=volume.source.format,
            model_id=self.model.model_id,
            model_version=self.model.version,
            model_sha256=self.model.sha256,
            encoder=self.model.encoder,
            label_set=self.model.label_set,
            software={"fm3d": __version__, **{name: _version(name) for name in _SOFTWARE}},
            device=str(self.segmenter.device),
            threads=torch.get_num_threads(),
            etta=self.etta,
            reoriented=volume.source.orientation != "RAS",
            resampled=not (np.allclose(network_spacing, volume.spacing, atol=1e-3) and tuple(prepared.tensor.shape[2:]) == volume.shape),
            network_spacing_mm=tuple(round(v, 4) for v in network_spacing),
            model_lesion_sensitivity=self.model.lesion_sensitivity,
            model_evaluation=self.model.evaluation,
            timings_s=timings,
            created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )
        return PipelineResult(Report.from_findings(findings, provenance), volume, segmentation)

    @torch.no_grad()
    def _logits(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.etta:
            return self.segmenter.logits(tensor)
        return etta_logits(self.segmenter, tensor, self.etta_steps)[0]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # e.g. run from a source tree that was never installed
        return "unknown"
