"""The import table of the house (docs/development.md draws it): each package of this project may
import its own modules and those of the packages listed for it, never the others. Every import
statement counts, those inside functions too (a lazy import is still a dependency), so the check reads
the source rather than sys.modules."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVERYTHING = "everything"
#: package -> the packages it may import besides itself. The root package `fm` (its __init__, the
#: version and the table of moved modules) is importable from anywhere.
TABLE: dict[str, set[str] | str] = {
    "fm": {"fm.core"},
    "fm.core": set(),
    "encoders": {"fm.core"},
    "heads": {"fm.core", "encoders"},
    "fm.report": {"fm.core"},
    "fm.clinical": {"fm.core", "fm.report"},
    "fm.synth": {"fm.core", "fm.report", "fm.evaluate"},  # training questions avoid the held-out set by name
    "fm.probe": {"fm.core", "encoders", "heads"},
    "fm.lm": {"fm.core", "encoders", "heads", "fm.report", "fm.synth", "fm.probe", "fm.evaluate"},
    "fm.serve": {"fm.core", "fm.lm"},
    "fm.evaluate": {"fm.core", "fm.report"},
    "fm.pipeline": {"fm.core", "heads", "fm.report", "fm.clinical", "fm.lm", "fm.serve"},
    "fm.demo": {"fm.core", "fm.report", "fm.clinical", "fm.lm", "fm.serve", "fm.pipeline"},
    "fm.cli": EVERYTHING,
    "fm.__main__": EVERYTHING,
    "app": EVERYTHING,
    "eval": EVERYTHING,
}
#: (module, module it imports) against the table, each for a reason that is the point of the module
EXCEPTIONS = {
    # fm registers its language model with transformers' Auto classes when transformers loads them
    # (an import hook that runs only then), so that `import fm` is enough for AutoModel to load it
    ("fm", "fm.lm.modeling"),
    ("fm", "fm.lm.configuration"),
    # the segmentation network's training recipe draws its scans from the synthetic data engine
    ("heads.train_segmenter", "fm.synth.generator"),
}


def package_of(module: str) -> str | None:
    """The longest entry of the table the module lies in; None: not this project's."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in TABLE:
            return ".".join(parts[:end])
    return None


def project_modules() -> list[tuple[str, Path]]:
    files = [
        ROOT / "app.py",
        *(p for folder in ("fm", "encoders", "heads", "eval") for p in (ROOT / folder).rglob("*.py")),
    ]
    return [(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"), p) for p in files]


KNOWN = {name for name, _ in project_modules()}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from fm.core import regions` imports fm.core.regions; `from fm.core.io import Volume` imports fm.core.io
            names.update(
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in KNOWN else node.module
                for alias in node.names
            )
    return {name for name in names if package_of(name) is not None}


def allowed(importer: str, imported: str) -> bool:
    own, other = package_of(importer), package_of(imported)
    rule = TABLE[own]
    return rule == EVERYTHING or other in (own, "fm") or other in rule or (importer, imported) in EXCEPTIONS


@pytest.mark.parametrize("module, path", project_modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_import_follows_the_table(module, path):
    wrong = sorted(name for name in imported_modules(path) if not allowed(module, name))
    assert not wrong, f"{module} ({package_of(module)}) imports {wrong}, which its row of the table does not allow"


def test_the_table_covers_every_module_and_has_no_cycle():
    assert all(package_of(name) for name in KNOWN), "a module outside every package of the table"
    graphlib.TopologicalSorter({k: v for k, v in TABLE.items() if v != EVERYTHING}).prepare()  # CycleError
    for importer, imported in EXCEPTIONS:
        assert importer in KNOWN and imported in KNOWN, f"exception {importer} -> {imported} names a missing module"
        assert imported in imported_modules(dict(project_modules())[importer]), f"{importer} no longer needs {imported}"


def test_every_arrow_of_the_table_is_used():
    """The table says what each package needs, no more: an arrow nothing uses is taken out."""
    used = {package: set() for package in TABLE}
    for module, path in project_modules():
        used[package_of(module)].update(package_of(name) for name in imported_modules(path))
    for package, rule in TABLE.items():
        if rule != EVERYTHING:
            assert rule <= used[package], f"{package} may import {sorted(rule - used[package])} but does not"


def test_the_check_sees_a_wrong_arrow(tmp_path):
    """A lower layer importing a higher one, lazily inside a function, is caught."""
    source = tmp_path / "measure.py"
    source.write_text("def f():\n    from fm.pipeline.report_pipeline import ReportPipeline\n")
    assert "fm.pipeline.report_pipeline" in imported_modules(source)
    assert not allowed("fm.core.measure", "fm.pipeline.report_pipeline")
    assert allowed("fm.pipeline.report_pipeline", "fm.core.measure")


def test_every_moved_module_has_a_home_and_no_old_file_shadows_it():
    """fm._moved's table points at modules that exist, and no old flat file is left to shadow it."""
    import importlib.util

    from fm._moved import BECAME_PACKAGE, MOVED

    for old, new in MOVED.items():
        for home in (new,) if isinstance(new, str) else new:
            assert home in KNOWN, f"{old} is said to live in {home}, which does not exist"
        assert old not in KNOWN, f"{old} still exists beside its new home {new}"
    for package, homes in BECAME_PACKAGE.items():
        assert importlib.util.find_spec(package).submodule_search_locations, f"{package} is not a package"
        assert all(home in KNOWN for home in homes)


@pytest.mark.slow  # 16 s: imports every 0.1 path in a fresh interpreter
def test_old_import_paths_keep_working_with_a_deprecation_warning():
    """What the 0.1 README showed users still imports, warns, and is the same object as the new path."""
    script = """
import warnings
warnings.simplefilter("error")
import fm
try:
    import fm.io
except DeprecationWarning as warning:
    assert "fm.core.io" in str(warning), warning
else:
    raise AssertionError("no warning")
warnings.simplefilter("ignore")
import fm.io, fm.core.io, fm.model, fm.lm.modeling
from fm.report import Report
from fm.report.document import Report as NewReport
from fm.pipeline import ReportPipeline
from fm.pipeline.report_pipeline import ReportPipeline as NewPipeline
from fm.cli import main
from fm.cli.fm_cli import main as new_main
assert fm.io is fm.core.io and fm.io.load_volume is fm.core.io.load_volume
assert fm.model.FMForReportGeneration is fm.lm.modeling.FMForReportGeneration
assert Report is NewReport and ReportPipeline is NewPipeline and main is new_main
import heads.atlas, heads.tissue_priors
assert heads.atlas is heads.tissue_priors
import fm.render, fm.narration, fm.pipeline.report_folder, fm.lm.loading
assert fm.render.write_report_folder is fm.pipeline.report_folder.write_report_folder
assert fm.render.make_overlay is fm.report.render.make_overlay
assert fm.narration.load_report_model is fm.lm.loading.load_report_model
import click
from fm.cli import main
assert isinstance(main, click.Group)
try:
    from fm.cli import probe  # a submodule now (the probe command's module): not forwarded, not wrong
except ImportError:
    pass
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # `python -m` of an old path (the 0.1 README trained with `python -m fm.train`) runs the new module
    done = subprocess.run([sys.executable, "-m", "fm.train", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "--stage" in done.stdout, done.stderr
    assert "python -m fm.train is now python -m fm.lm.train" in done.stderr


def test_the_vllm_plugins_imports_stay_light():
    """The grounded-decoding plugin runs inside vLLM's own environment, which has no nibabel,
    SimpleITK, MONAI, scipy or matplotlib: what it imports, package __init__ files included, must not
    need them."""
    import subprocess
    import sys

    script = """
import importlib.abc, importlib.machinery, sys
HEAVY = {"nibabel", "SimpleITK", "monai", "scipy", "matplotlib", "pydicom", "highdicom"}
class Missing(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"{spec.name} is not in the vLLM environment")
    def exec_module(self, module):
        pass
class Refuse(importlib.abc.MetaPathFinder):  # finds them (transformers asks), fails to import them
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in HEAVY:
            return importlib.machinery.ModuleSpec(name, Missing())
sys.meta_path.insert(0, Refuse())
import fm.lm.grounded_decoding, fm.serve.backends  # what fm/serve/vllm_plugin.py imports of ours
"""
    env = {**__import__("os").environ, "FM_VLLM_PLUGIN": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
