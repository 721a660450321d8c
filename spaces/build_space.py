"""Stage a folder that is ready to push as a Hugging Face Space.

    python spaces/build_space.py /tmp/space                  # stage
    python spaces/build_space.py /tmp/space --push-to-hub YOU/dialogue-workbench   # stage and push as a Gradio Space
    (or push a staged folder yourself: hf upload YOU/dialogue-workbench /tmp/space . --repo-type space)

The Space holds: this folder's README.md (with the Spaces front matter), app.py and requirements.txt at its root,
plus the workbench package, configs/, the committed demo family (store/demo), the demo corpus (data/demo) and the
measured runs (results/, for the dashboard). Staging uses no network; nothing outside this repository is copied
(the DialogSum files in ../shared are not redistributed). Pushing creates the Space repo (sdk gradio) if needed and
uploads the folder with huggingface_hub (token from HF_TOKEN or `hf auth login`; never printed).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COPY = ["workbench", "configs", "store/demo", "data/demo", "results"]
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")  # as workbench.store
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


def push(folder: Path, repo_id: str) -> str:
    """Push a staged folder as a Space repo; returns the commit id. A failure exits with one line and status 1."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from workbench import store

    try:
        commit = store.HubStore().push_space(folder, repo_id)
    except store.StoreError as err:
        print(f"error: {err}\nThe staged Space is complete in {folder}: run the same command with a new folder, or "
              f"`hf upload {repo_id} {folder} . --repo-type space`, to retry.", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"[space] pushed {folder} to the Space {repo_id} (commit {commit[:12]})")
    return commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="an empty folder to stage the Space into")
    parser.add_argument("--push-to-hub", metavar="REPO", help="also push the staged folder as this Space repo")
    args = parser.parse_args(argv)
    if args.push_to_hub and not REPO_ID.match(args.push_to_hub):
        parser.error(f"--push-to-hub: {args.push_to_hub!r} is not a valid repo id: use namespace/name")
    stage(args.out)
    if args.push_to_hub:
        push(args.out, args.push_to_hub)
    return 0


if __name__ == "__main__":
    sys.exit(main())
