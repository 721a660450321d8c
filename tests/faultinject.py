"""Run a command-line module with a fault injected: the process SIGKILLs itself at one precise point, the way a power
cut or the OOM killer would stop it (no cleanup, no exception handlers, no atexit).

    WORKBENCH_FAULT=<point> python -m tests.faultinject trainers.full --max-steps 40 ...

Points:
    hf-checkpoint:<step>   transformers is saving checkpoint-<step>: weights, optimizer and scheduler are written,
                           trainer_state.json is half-written
    ppo-checkpoint-swap    trainers.ppo is swapping in a new checkpoint: the old one has been moved aside, the new one
                           not yet moved into place
    publish                the local store is copying a new revision into its staging folder (two files copied)
    record                 results/<run_id>.json is being written: half of it is in the temporary file

Timing a SIGKILL from outside cannot hit windows this narrow reliably; the tests also kill trainers from outside.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    kind, _, arg = point.partition(":")
    if kind == "hf-checkpoint":
        from transformers.trainer_callback import TrainerState

        original = TrainerState.save_to_json

        def save_to_json(self, json_path):
            if self.global_step == int(arg):
                Path(json_path).write_text('{"global_step": ' + str(self.global_step) + ', "log_hist')
                die()
            return original(self, json_path)

        TrainerState.save_to_json = save_to_json
    elif kind == "ppo-checkpoint-swap":
        original_rename = Path.rename

        def rename(self, target):
            if self.name == ".tmp-latest" and (self.parent / ".old-latest").exists():
                die()
            return original_rename(self, target)

        Path.rename = rename
    elif kind == "publish":
        import shutil

        from workbench import store

        original_copy, copied = shutil.copy2, []

        def copy2(src, dst, *args, **kwargs):
            result = original_copy(src, dst, *args, **kwargs)
            if "/revisions/.tmp-" in str(dst):
                copied.append(dst)
                if len(copied) == 2:
                    die()
            return result

        store.shutil.copy2 = copy2
    elif kind == "record":
        import tempfile

        from workbench import io, paths

        original_write = io.atomic_write_bytes

        def atomic_write_bytes(path, data: bytes):
            path = Path(path)
            if path.parent == paths.RESULTS_DIR and path.suffix == ".json":
                fd, _ = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                os.write(fd, data[: len(data) // 2])
                os.fsync(fd)
                die()
            return original_write(path, data)

        io.atomic_write_bytes = atomic_write_bytes
    else:
        raise SystemExit(f"unknown fault point {point!r}")


if __name__ == "__main__":
    module, *args = sys.argv[1:]
    install(os.environ["WORKBENCH_FAULT"])
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
