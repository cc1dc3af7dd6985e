"""The import layers, as the README's Layout section writes them: fm core <- encoders <- heads <-
the rest of fm (pipeline, report, render, embed, cli), app.py and eval. A module may import its own
layer and those below, never one above. Every import statement counts, those inside functions too
(a lazy import is still a dependency), so the check reads the source rather than sys.modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: fm modules below the encoders: reading scans, labels, errors, checksums, findings and their
#: measurement, lesion matching, and the templates the atlas uses.
FM_CORE = {
    "fm",
    "fm.errors",
    "fm.io",
    "fm.dicom",
    "fm.limits",
    "fm.labels",
    "fm.masks",
    "fm.checksums",
    "fm.contrasts",
    "fm.examples",
    "fm.findings",
    "fm.measure",
    "fm.atlas",
    "fm.lesion_matching",
    "fm.synth",
    "fm.synth.template",
}
#: Modules that live in a lower package but sit on top: the training recipe draws its scans from
#: fm.synth, whose samples come with measured findings and reports (the top layer).
ON_TOP = {"heads.train_segmenter"}
#: Upward imports that are the point of their module: fm registers its language model with
#: transformers' Auto classes when transformers loads them (a plug-in hook, run only then).
ALLOWED = {("fm", "fm.model")}
LAYER_NAMES = ("fm core", "encoders", "heads", "pipeline, report, CLI, app, eval, training")


def layer(module: str) -> int | None:
    top = module.split(".")[0]
    if module in ON_TOP:
        return 3
    if module in FM_CORE:
        return 0
    if top == "encoders":
        return 1
    if top == "heads":
        return 2
    if top in ("fm", "eval", "app"):
        return 3
    return None  # not this project's


def project_modules() -> list[tuple[str, Path]]:
    files = [
        ROOT / "app.py",
        *(p for folder in ("fm", "encoders", "heads", "eval") for p in (ROOT / folder).rglob("*.py")),
    ]
    return [(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"), p) for p in files]


def imported_modules(path: Path, module: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from fm import synth` imports fm.synth; `from fm.io import load_volume` imports fm.io
            names.update(
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in KNOWN else node.module
                for alias in node.names
            )
    return names


KNOWN = {name for name, _ in project_modules()}


@pytest.mark.parametrize(
    "module, path",
    [m for m in project_modules() if layer(m[0]) < 3],
    ids=lambda v: str(v) if isinstance(v, str) else "",
)
def test_lower_layers_import_nothing_above_them(module, path):
    own = layer(module)
    above = sorted(
        name for name in imported_modules(path, module) if (layer(name) or 0) > own and (module, name) not in ALLOWED
    )
    assert not above, f"{module} ({LAYER_NAMES[own]}) imports {above}, which sit above it"


def test_the_layers_cover_every_module():
    assert {layer(name) for name, _ in project_modules()} == {0, 1, 2, 3}
    assert all(name in KNOWN for name in FM_CORE), "a core module named here no longer exists"
