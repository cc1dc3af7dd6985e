"""Where this package keeps what it builds or downloads once (the MNI priors, checkpoints fetched by
URL): $FM_CACHE, else $XDG_CACHE_HOME/fm3d, else ~/.cache/fm3d."""

from __future__ import annotations

import os
from pathlib import Path


def cache_folder() -> Path:
    if os.environ.get("FM_CACHE"):
        return Path(os.environ["FM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fm3d"
