"""Example scans that ship with installed packages, so every command has something to run on
without a download."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from fm.core.errors import look_up
from fm.core.labels import LabelMap

# name -> (package, resource paths of one session (the first is the grid of the results), modality,
# their contrasts, what it is)
EXAMPLES = {
    "synthetic-brain": (
        "fm",
        ("data/example_brain_t1.nii.gz", "data/example_brain_flair.nii.gz"),
        "MR",
        ("t1c", "flair"),  # fm.synth's T1 preset is post-contrast: the lesion's rim enhances
        "synthetic 1 mm brain with one right parietal lesion, contrast-enhanced T1 and FLAIR, made by fm.synth (python -m fm.synth.example)",
    ),
    "mni152": (
        "nilearn",
        ("datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",),
        "MR",
        ("t1",),
        "MNI152 2009c symmetric T1 template, 1 mm, as shipped by nilearn",
    ),
}
DEFAULT_EXAMPLE = "synthetic-brain"


def example_paths(name: str = DEFAULT_EXAMPLE) -> list[Path]:
    """Paths of a bundled example session's scans (co-registered contrasts, the first one first)."""
    package, resources, *_ = look_up("example", name, EXAMPLES)
    return [Path(str(files(package).joinpath(resource))) for resource in resources]


def example_path(name: str = DEFAULT_EXAMPLE) -> Path:
    """Path of a bundled example's first scan."""
    return example_paths(name)[0]


def nilearn_template(kind: str) -> Path:
    """nilearn's MNI152 2009c symmetric 1 mm maps: kind is 't1', 'gm' or 'wm'."""
    if kind not in ("t1", "gm", "wm"):
        raise KeyError(kind)
    return Path(str(files("nilearn").joinpath(f"datasets/data/mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz")))


def example_modality(name: str = DEFAULT_EXAMPLE) -> str:
    return EXAMPLES[name][2]


def example_contrasts(name: str = DEFAULT_EXAMPLE) -> tuple[str, ...]:
    return EXAMPLES[name][3]


def example_label_map() -> LabelMap:
    """The synthetic example's true segmentation, written by fm.synth with its scans (for benchmarks
    and tests that need one without segmenting; `fm report` segments the scans itself)."""
    scan = example_path()
    truth = json.loads(scan.with_name("example_brain_t1_findings.json").read_text())
    return LabelMap.load(scan.with_name("example_brain_t1_labels.nii.gz"), truth["provenance"]["label_set"])
