"""Stage a folder that is ready to push as a Hugging Face Space.

    python spaces/build_space.py /tmp/space                  # stage
    hf upload YOU/dialogue-workbench /tmp/space . --repo-type space

The Space holds: this folder's README.md (with the Spaces front matter), app.py and requirements.txt at its root,
plus the workbench package, configs/, the committed demo family (store/demo), the demo corpus (data/demo) and the
measured runs (results/, for the dashboard). No network is used; nothing outside this repository is copied (the
DialogSum files in ../shared are not redistributed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COPY = ["workbench", "configs", "store/demo", "data/demo", "results"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".tmp-*", ".*.tmp")


def stage(out: Path) -> Path:
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("README.md", "app.py", "requirements.txt"):
        shutil.copy2(HERE / name, out / name)
    for rel in COPY:
        src = ROOT / rel
        if not src.exists():
            print(f"[space] skipping {rel}: not found (build the demo family with python -m trainers.build_demo)",
                  file=sys.stderr)
            continue
        shutil.copytree(src, out / rel, ignore=IGNORE)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"[space] staged {out} ({size / 1e6:.1f} MB)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="an empty folder to stage the Space into")
    stage(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
