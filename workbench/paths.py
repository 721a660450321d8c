"""Where things live. Every location can be moved with an environment variable (tests use temporary folders)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


STORE_DIR = _env_path("WORKBENCH_STORE", REPO_ROOT / "store")
RESULTS_DIR = _env_path("WORKBENCH_RESULTS", REPO_ROOT / "results")
DEMO_DATA_DIR = _env_path("WORKBENCH_DEMO_DATA", REPO_ROOT / "data" / "demo")
SHARED_DIALOGSUM = _env_path("WORKBENCH_DIALOGSUM", REPO_ROOT.parent / "shared" / "data" / "dialogsum")
