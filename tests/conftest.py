"""Shared fixtures. Two kinds of files live beside the checkout in ../shared, never in the
repository: real scans (realdata/) and the published encoder checkpoints with their authors'
outputs (refvectors/). Tests that read them skip with a one-line reason where the folder is
absent (a user's fresh clone), and fail instead when FM_REQUIRE_SHARED=1 (as .ci/run sets), so CI
cannot pass by skipping them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
REALDATA = SHARED / "realdata"
SWIN_BOB_REFERENCE = SHARED / "refvectors" / "swin_bob"


def require_shared(path: Path, what: str) -> Path:
    """`path` if it exists; else skip (or fail under FM_REQUIRE_SHARED=1) saying what is missing."""
    if not path.exists():
        message = f"{what} not found at {path} (it lives beside the checkout, in ../shared, not in it)"
        if os.environ.get("FM_REQUIRE_SHARED") == "1":
            pytest.fail(message + "; FM_REQUIRE_SHARED=1 requires it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def realdata() -> Path:
    return require_shared(REALDATA, "real scans")


@pytest.fixture(scope="session")
def swin_bob_reference() -> Path:
    """The Swin-BOB reference folder: a small released checkpoint, its input and outputs."""
    require_shared(SWIN_BOB_REFERENCE / "swinbob_small_model_final.pt", "the Swin-BOB reference checkpoint")
    return SWIN_BOB_REFERENCE


@pytest.fixture(scope="session")
def example_reports(tmp_path_factory) -> Path:
    """`fm report --example` run once for every test that reads its outputs, written as `fm report
    --manifest` writes a session: REPORTS/example/report.json, mask.nii.gz, ..."""
    from click.testing import CliRunner

    from fm.cli.fm_cli import main

    reports = tmp_path_factory.mktemp("example_reports")
    done = CliRunner().invoke(main, ["report", "--example", "--out", str(reports / "example")])
    assert done.exit_code == 0, done.output
    return reports
