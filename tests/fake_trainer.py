"""A stand-in trainer for the jobs tests: it behaves like trainers.lora towards whoever runs it, in a fraction of a
second per step and without loading a model.

- takes the same flags (--max-steps / --steps, --output, --save-steps, --logging-steps, --fresh; others ignored);
- keeps its checkpoint in $WORKBENCH_RUNS/<method>/<output with / as -->, as common.checkpoint_dir does, and resumes
  from it when run again (a checkpoint is a file holding the step, written atomically);
- writes the live progress file with trainers.callbacks.ProgressWriter (the API a loop of its own, like PPO, uses);
- on SIGTERM/SIGINT (trainers.callbacks.StopFlag) finishes the step, checkpoints and exits with STOPPED_EXIT_CODE;
- at the end writes COMPLETED (as common.finish_run) and exits 0.

Environment knobs (WORKBENCH_* so that TrainingJobs passes them on): WORKBENCH_FAKE_STEP_S (seconds per step,
default 0.05), WORKBENCH_FAKE_FAIL_AT (exit 1 at that step), WORKBENCH_FAKE_IGNORE_TERM=1 (ignore SIGTERM, to test the
kill after the stop timeout).

    python -m tests.fake_trainer --max-steps 40 --output local/x
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from trainers.callbacks import ProgressWriter, StopFlag, progress_path, stop_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", "--steps", dest="max_steps", type=int, default=20)
    parser.add_argument("--output", default="local/fake")
    parser.add_argument("--save-steps", type=int, default=5)
    parser.add_argument("--logging-steps", type=int, default=1)
    parser.add_argument("--method", default="lora")
    parser.add_argument("--fresh", action="store_true")
    args, _ = parser.parse_known_args(argv)
    ckpt = Path(os.environ["WORKBENCH_RUNS"]) / args.method / args.output.replace("/", "--")
    if args.fresh or (ckpt / "COMPLETED").exists():
        shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.mkdir(parents=True, exist_ok=True)
    saved = ckpt / "checkpoint"
    start = int(saved.read_text()) if saved.exists() else 0
    print(f"[fake] {'resuming after step ' + str(start) if start else 'starting'}; {args.max_steps} steps", flush=True)
    if os.environ.get("WORKBENCH_FAKE_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop = StopFlag(signals=(signal.SIGINT,)).install()
    else:
        stop = StopFlag().install()
    step_s = float(os.environ.get("WORKBENCH_FAKE_STEP_S", "0.05"))
    fail_at = int(os.environ.get("WORKBENCH_FAKE_FAIL_AT", "0"))
    with ProgressWriter(progress_path(ckpt), max_steps=args.max_steps, tick_s=0.1) as progress:
        progress.begin(start)
        for step in range(start + 1, args.max_steps + 1):
            time.sleep(step_s)
            if step == fail_at:
                print(f"[fake] error at step {step}", file=sys.stderr, flush=True)
                return 1
            if step % args.logging_steps == 0:
                progress.log(step, loss=10.0 / step, reward_mean=step / 10, kl=0.01 * step)
            else:
                progress.tick(step)
            print(f"\rfake: {step}/{args.max_steps}", end="", flush=True)
            if step % args.save_steps == 0 or stop.requested or step == args.max_steps:
                tmp = ckpt / ".checkpoint.tmp"
                tmp.write_text(str(step))
                tmp.replace(saved)
            if stop.requested and step < args.max_steps:
                progress.end(step, stopped=True)
                stop.restore()
                return stop_exit(step, ckpt)
        progress.end(args.max_steps)
    stop.restore()
    (ckpt / "COMPLETED").write_text("fake-run\n")
    print(f"\n[fake] finished {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
