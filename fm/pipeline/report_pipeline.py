"""ReportPipeline: the path of one session in one call, each stage timed and announced to an
optional progress callback.

    pipeline = ReportPipeline.from_pretrained()               # the default: contrast-adaptive brain segmentation
    result = pipeline(["flair.nii.gz", "t1c.nii.gz"], contrasts=["flair", "t1c"])
    result.report.to_markdown(); result.segmentation.labels   # labels on the first scan's grid

Two kinds of segmenter run behind it:
- the default, `heads.brain.ContrastAdaptiveSegmenter` (one or several co-registered contrasts):
  load -> gate -> segment (brain extraction, atlas priors, mixture fitted to the scan, lesions)
  -> measure -> report; the gate refuses what is not a brain MRI unless `force=True`;
- a network (`--model synth-unet`, a model folder, a Hub id or a Swin-BOB checkpoint; one scan):
  load -> gate -> preprocess -> segment -> resample -> measure -> report. Only brain networks are
  gated: a Swin-BOB organ model is for body scans.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Callable

import numpy as np

from fm.core.errors import InputError
from fm.core.io import Volume, load_volume
from fm.core.labels import BRAIN_TUMOUR, LabelMap
from fm.core.measure import measure
from fm.core.session import Session, load_session
from fm.core.version import __version__
from fm.pipeline.gate import BrainEvidence, check_brain, check_scan, enforce, out_of_scope_notice
from fm.report.document import Report, ReportProvenance
from heads.brain import BrainAnalysis, ContrastAdaptiveSegmenter
from heads.result import ModelInfo, Segmentation
from heads.segmenters import create_segmenter, published_checkpoint_names

#: Timed stages of each kind of segmenter; "report" (assembling text, milliseconds) is announced, not timed.
ADAPTIVE_STAGES = ("load", "gate", "segment", "measure", "report")
NETWORK_STAGES = ("load", "gate", "preprocess", "segment", "resample", "measure", "report")
_SOFTWARE = ("torch", "monai", "numpy", "nibabel", "SimpleITK")


@dataclasses.dataclass
class PipelineResult:
    report: Report
    volume: Volume  # the first scan: the grid of the labels
    segmentation: Segmentation
    session: Session | None = None  # the scans and their contrasts
    analysis: BrainAnalysis | None = None  # what the adaptive segmenter found out (brain mask, registration)

    @property
    def label_map(self) -> LabelMap:
        """The segmentation placed by its first scan's affine, as a report model's encoder reads it."""
        return LabelMap(self.segmentation.labels, self.volume.affine, self.segmentation.label_set)


class ReportPipeline:
    def __init__(self, segmenter, model: ModelInfo, etta: bool = False, etta_steps: int = 3):
        """segmenter: a ContrastAdaptiveSegmenter or a network heads.network_segmenter.Segmenter."""
        self.segmenter, self.model, self.etta, self.etta_steps = segmenter, model, etta, etta_steps

    @property
    def adaptive(self) -> bool:
        return isinstance(self.segmenter, ContrastAdaptiveSegmenter)

    @property
    def stages(self) -> tuple[str, ...]:
        return ADAPTIVE_STAGES if self.adaptive else NETWORK_STAGES

    @classmethod
    def from_pretrained(
        cls, model=None, encoder: str | None = None, etta: bool = False, **overrides
    ) -> "ReportPipeline":
        """model: what heads.segmenters.create_segmenter takes (None: ADAPTIVE_MODEL_ID, a registered
        name, a folder, hf-hub:org/name); with `encoder` one of the published Swin-BOB checkpoints,
        `model` is its weights (the CLI's --encoder NAME --model FILE)."""
        if encoder in published_checkpoint_names():
            segmenter, info = create_segmenter(encoder, pretrained=model, **overrides)
        elif encoder not in (None, "brain_id"):  # brain_id: the bundled network's own family
            raise InputError(
                f"{encoder} has no published segmentation head; segmenters exist for: brain_id, {', '.join(published_checkpoint_names())}"
            )
        else:
            segmenter, info = create_segmenter(model, **overrides)
        if etta and isinstance(segmenter, ContrastAdaptiveSegmenter):
            raise InputError("--etta applies to network segmenters (--model), not to the default")
        return cls(segmenter, info, etta=etta)

    def __call__(
        self,
        scans: str | os.PathLike | Volume | list | Session,
        progress: Callable[[str], None] | None = None,
        load: Callable[..., Volume] = load_volume,
        contrasts: list[str] | None = None,
        force: bool = False,
        **load_options,
    ) -> PipelineResult:
        """scans: one scan or several co-registered contrasts of one session (paths or Volumes), or
        a Session already loaded (then `contrasts` and `load` are not used).
        `load(path, **load_options)` reads a path (fm.core.io.load_volume: frame, series, modality,
        max_voxels). contrasts: one name per scan (fm.core.contrasts), else guessed. force: report a
        scan the gate refuses, with an out-of-scope notice. `progress(stage)` is called as each
        stage starts."""
        timer = _Timer(progress)
        timer.start("load")
        if isinstance(scans, Session):
            session = scans
        else:
            scans = list(scans) if isinstance(scans, (list, tuple)) else [scans]
            session = load_session(scans, contrasts, load=lambda path: load(path, **load_options))
        volume = session.reference
        timer.stop("load")
        if not self.adaptive and len(session.volumes) > 1:
            raise InputError(f"{self.model.model_id} segments one scan; several contrasts need the default segmenter")

        timer.start("gate")
        gated = self.adaptive or self.model.label_set == BRAIN_TUMOUR.name
        reasons = check_scan(volume) if gated else []
        enforce(volume.source.path, reasons, force)
        timer.stop("gate")

        if self.adaptive:
            timer.start("segment")
            result = self.segmenter(session.channels(), volume.affine, session.contrasts)
            analysis = result.analysis
            evidence = BrainEvidence(
                analysis.brain_volume_ml,
                analysis.atlas_scale,
                analysis.shell_to_brain,
                analysis.bright_outside_brain,
                analysis.tissue_order_problem,
            )
            brain_reasons = check_brain(evidence)
            enforce(volume.source.path, brain_reasons, force)
            reasons += brain_reasons
            segmentation = result.with_sides(volume)
            timer.stop("segment")
            regions = None if analysis.subregions_assessed else ("whole_tumour",)
            grid = dict(
                reoriented=volume.source.orientation != "RAS", resampled=False, network_spacing_mm=volume.spacing
            )
        else:
            segmentation, grid = self._network(volume, timer)
            regions, analysis = None, None

        timer.start("measure")
        findings = measure(
            segmentation.labels,
            volume,
            segmentation.label_set,
            probabilities=segmentation.probabilities,
            source=self.model.model_id,
            reported_regions=regions,
        )
        timer.stop("measure")
        if progress is not None:
            progress("report")
        provenance = ReportProvenance(
            input_file=volume.source.path,
            input_format=volume.source.format,
            input_files=list(session.files) if len(session.files) > 1 else [],
            contrasts=list(session.contrasts),
            contrasts_guessed=session.contrasts_guessed,
            resampled_inputs=list(session.resampled),
            out_of_scope=out_of_scope_notice(reasons) if reasons else None,
            model_id=self.model.model_id,
            model_version=self.model.version,
            model_sha256=self.model.sha256,
            encoder=self.model.encoder,
            label_set=self.model.label_set,
            software={"fm3d": __version__, **{name: _version(name) for name in _SOFTWARE}},
            device=str(getattr(self.segmenter, "device", "cpu")),
            threads=_threads(),
            etta=self.etta,
            model_lesion_sensitivity=self.model.lesion_sensitivity,
            model_evaluation=self.model.evaluation,
            timings_s=timer.timings,
            created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **grid,
        )
        return PipelineResult(Report.from_findings(findings, provenance), volume, segmentation, session, analysis)

    def _network(self, volume: Volume, timer: "_Timer") -> tuple[Segmentation, dict]:
        timer.start("preprocess")
        prepared = self.segmenter.preprocess(volume)
        timer.stop("preprocess")
        timer.start("segment")
        logits = self._logits(prepared.tensor)
        timer.stop("segment")
        timer.start("resample")
        segmentation = self.segmenter.to_volume(logits, prepared, volume)
        del logits
        timer.stop("resample")
        network_spacing = tuple(float(v) for v in np.linalg.norm(prepared.affine[:3, :3], axis=0))
        grid = dict(
            reoriented=volume.source.orientation != "RAS",
            resampled=not (
                np.allclose(network_spacing, volume.spacing, atol=1e-3)
                and tuple(prepared.tensor.shape[2:]) == volume.shape
            ),
            network_spacing_mm=network_spacing,
        )
        return segmentation, grid

    def _logits(self, tensor):
        import torch

        from heads.etta import etta_logits

        with torch.no_grad():
            if not self.etta:
                return self.segmenter.logits(tensor)
            return etta_logits(self.segmenter, tensor, self.etta_steps)[0]


class _Timer:
    """Wall-clock seconds per stage, in order, each announced as it starts."""

    def __init__(self, progress: Callable[[str], None] | None):
        self.progress = progress
        self.timings: dict[str, float] = {}

    def start(self, name: str) -> None:
        if self.progress is not None:
            self.progress(name)
        self.timings[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        self.timings[name] = round(time.perf_counter() - self.timings[name], 3)


def _threads() -> int:
    """Threads of the numerical libraries: torch's when a network ran, else what the process may use."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else len(os.sched_getaffinity(0))


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # e.g. run from a source tree that was never installed
        return "unknown"
