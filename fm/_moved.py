"""Old module paths of fm (and of two heads modules), kept working until fm3d 0.2 now that fm/ is
subpackages.

`import fm.io` still gives fm.core.io, with a DeprecationWarning that names the new path, and
`python -m fm.lm.train`'s old spelling `python -m fm.train` still runs. An old module whose names
went to two new ones (fm.render, fm.narration) becomes a module that forwards each name to where it
lives now. Old modules whose name is now a package (fm.report, fm.pipeline, ...) forward their
public names from the package's `__getattr__`, so `from fm.report import Report` keeps working.
Nothing here imports the moved modules until an old path is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: flat module -> its new home, or the new homes of its names (the first is the main one)
MOVED: dict[str, str | tuple[str, ...]] = {
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
    "fm.render": ("fm.report.render", "fm.pipeline.report_folder"),
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
    "fm.narration": ("fm.pipeline.narration", "fm.lm.loading"),
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
#: Of these packages only the names listed are forwarded: the others are now submodules of the same
#: name (fm.cli.report is the module of the `report` command), which the import system returns first.
FORWARDED_ONLY = {"fm.cli": {"main"}}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old path is removed in fm3d 0.2", DeprecationWarning, stacklevel=3)


def _homes(old: str) -> tuple[str, ...]:
    new = MOVED[old]
    return (new,) if isinstance(new, str) else new


class _Alias(importlib.abc.Loader):
    def __init__(self, old: str):
        self.old, self.homes = old, _homes(old)

    def create_module(self, spec):
        return None  # a blank module: replaced by the new one, or given a forwarding __getattr__

    def exec_module(self, module):
        _warn(self.old, " and ".join(self.homes))
        if len(self.homes) == 1:
            # the import system reads sys.modules again after exec_module: the old name yields the new module
            sys.modules[self.old] = importlib.import_module(self.homes[0])
        else:
            module.__getattr__ = _forwarder(self.old, self.homes, warn=False)

    def get_code(self, fullname):
        """What `python -m OLD` runs: the main new module's code (runpy asks for it). The person who
        typed the command is told, so a FutureWarning (shown by default), not a DeprecationWarning."""
        message = f"python -m {self.old} is now python -m {self.homes[0]}; the old name goes in fm3d 0.2"
        warnings.warn(message, FutureWarning, stacklevel=2)
        return importlib.util.find_spec(self.homes[0]).loader.get_code(self.homes[0])


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(fullname))


def _forwarder(old: str, homes: tuple[str, ...], warn: bool):
    """A module `__getattr__` that finds `name` in the first of `homes` that has it."""

    def __getattr__(name: str):
        if not name.startswith("_") and name in FORWARDED_ONLY.get(old, {name}):
            for home in homes:
                module = importlib.import_module(home)
                if hasattr(module, name):
                    if warn:
                        _warn(f"{old}.{name}", f"{home}.{name}")
                    value = getattr(module, name)
                    setattr(sys.modules[old], name, value)  # found once, warned once
                    return value
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__


def forward_old_names(package: str):
    """The `__getattr__` of a package that replaced a module of the same name."""
    return _forwarder(package, BECAME_PACKAGE[package], warn=True)


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
