"""Shared fixtures. The real scans live beside the checkout in ../shared/realdata (never in the
repository); tests that read them skip with a reason where the folder is absent, and fail instead
when FM_REQUIRE_REALDATA=1 (as .ci/run sets), so CI cannot pass by skipping them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        message = f"real scans not found at {REALDATA} (they live beside the checkout, not in it)"
        if os.environ.get("FM_REQUIRE_REALDATA") == "1":
            pytest.fail(message + "; FM_REQUIRE_REALDATA=1 requires them")
        pytest.skip(message)
    return REALDATA
