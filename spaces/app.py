"""Hugging Face Spaces entry point: the very same app as `python -m workbench`, unchanged.

Works in two layouts:
- inside this repository (`python spaces/app.py`): the repository root is the parent folder;
- in a Space staged by `python spaces/build_space.py OUT` (app.py next to workbench/, configs/, store/, data/).

The models config is $WORKBENCH_MODELS, defaulting here to configs/models/hub.yaml: the reference recipe's Hub models,
each slot falling back to its demo-family twin from the bundled store when the Hub model cannot be had.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = next((p for p in (HERE, HERE.parent) if (p / "workbench" / "__init__.py").is_file()), None)
if ROOT is None:
    raise SystemExit(f"workbench package not found next to {HERE} or in its parent folder")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("WORKBENCH_MODELS", str(ROOT / "configs" / "models" / "hub.yaml"))

from workbench.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--host", os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
                   "--port", os.environ.get("GRADIO_SERVER_PORT", "7860")]))
