"""Where the reference data lives: ``<repo>/../shared/data`` (``CHARGETRACKER_SHARED_DATA``
overrides it, e.g. when the repository is a worktree somewhere else)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CHARGETRACKER_SHARED_DATA", REPO.parent / "shared" / "data"))
CYCLER_MORE = SHARED / "cycler-more"


def absent(path: Path) -> str:
    return f"{path} is not on this machine (reference data in ../shared/data, read in place)"
