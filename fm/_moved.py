"""Old module paths of fm (and of two heads modules), kept working for one release (0.1 -> 0.2) after fm/ became subpackages.

`import fm.io` still gives fm.core.io, with a DeprecationWarning that names the new path. Old modules
whose name is now a package (fm.report, fm.pipeline, ...) forward their public names from the
package's `__getattr__` instead, so `from fm.report import Report` keeps working the same way.
Nothing here imports the moved modules until an old path is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: flat module -> its new home
MOVED = {
    "fm.errors": "fm.core.errors",
    "fm.limits": "fm.core.limits",
    "fm.io": "fm.core.io",
    "fm.dicom": "fm.core.dicom",
    "fm.labels": "fm.core.labels",
    "fm.masks": "fm.core.masks",
    "fm.checksums": "fm.core.checksums",
    "fm.examples": "fm.core.examples",
    "fm.contrasts": "fm.core.contrasts",
    "fm.manifests": "fm.core.manifests",
    "fm.session": "fm.core.session",
    "fm.findings": "fm.core.findings",
    "fm.measure": "fm.core.measure",
    "fm.atlas": "fm.core.regions",
    "fm.lesion_matching": "fm.core.lesion_matching",
    "fm.distributed": "fm.core.distributed",
    "fm.synth.template": "fm.core.mni_template",
    "fm.narrative": "fm.report.template_narrative",
    "fm.faithfulness": "fm.report.faithfulness",
    "fm.views": "fm.report.views",
    "fm.render": "fm.report.render",
    "fm.dicom_seg": "fm.clinical.dicom_seg",
    "fm.dicom_sr": "fm.clinical.dicom_sr",
    "fm.fhir": "fm.clinical.fhir",
    "fm.terminology": "fm.clinical.terminology",
    "fm.deidentify": "fm.clinical.deidentify",
    "fm.adapter": "fm.lm.adapter",
    "fm.prompts": "fm.lm.prompts",
    "fm.grounded_decoding": "fm.lm.grounded_decoding",
    "fm.model": "fm.lm.modeling",
    "fm.train": "fm.lm.train",
    "fm.default_lm": "fm.lm.default_lm",
    "fm.vllm_export": "fm.serve.vllm_export",
    "fm.vllm_server": "fm.serve.vllm_server",
    "fm.vllm_plugin": "fm.serve.vllm_plugin",
    "fm.embed": "fm.probe.embed",
    "fm.probe_features": "fm.probe.features",
    "fm.probe_run": "fm.probe.run",
    "fm.eval_segmentation": "fm.evaluate.segmentation",
    "fm.eval_reports": "fm.evaluate.reports",
    "fm.eval_vqa": "fm.evaluate.vqa",
    "fm.gate": "fm.pipeline.gate",
    "fm.narration": "fm.pipeline.narration",
    "fm.cohort": "fm.pipeline.cohort",
    "fm.demo_session": "fm.demo.visitor",
    "fm.cli_errors": "fm.cli.errors",
    "fm.cli_eval": "fm.cli.evaluate",
    "heads.atlas": "heads.tissue_priors",
    "heads.segmentation": "heads.network_segmenter",
}
#: old module whose name is now a package -> the modules its public names now live in
BECAME_PACKAGE = {
    "fm.report": ("fm.report.document",),
    "fm.clinical": ("fm.clinical.outputs",),
    "fm.serve": ("fm.serve.backends",),
    "fm.probe": ("fm.probe.linear",),
    "fm.pipeline": ("fm.pipeline.report_pipeline",),
    "fm.demo": ("fm.demo.page",),
    "fm.cli": ("fm.cli.fm_cli",),
}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old path is removed in fm3d 0.2", DeprecationWarning, stacklevel=3)


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        return None  # a blank module, replaced in exec_module

    def exec_module(self, module):
        _warn(module.__name__, self.new)
        # the import system reads sys.modules again after exec_module, so the old name yields the new module
        sys.modules[module.__name__] = importlib.import_module(self.new)


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))


def forward_old_names(package: str):
    """A module `__getattr__` for a package that replaced a module of the same name."""

    def __getattr__(name: str):
        if not name.startswith("_"):
            for home in BECAME_PACKAGE[package]:
                module = importlib.import_module(home)
                if hasattr(module, name):
                    _warn(f"{package}.{name}", f"{home}.{name}")
                    return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
