"""Live progress and clean stops for the trainers, for whoever watches a run (the app's Train tab, a terminal).

Two pieces, used by the HF-Trainer recipes (full, LoRA, reward, preference) and by loops of our own (PPO):

- a progress file, `progress_path(run_dir)` = `<checkpoint folder>/progress.jsonl`: one JSON object per line,
  appended and flushed as training runs, so a reader can tail it while the run goes on. Events:
  {"event": "begin", "step", "max_steps", "time"}                       training (re)starts at `step`
  {"event": "step",  "step", "max_steps", "elapsed_s", "time"}          at most once per `tick_s` seconds
  {"event": "log",   "step", "max_steps", "elapsed_s", "time", "loss", "learning_rate", "grad_norm", "epoch", ...}
  {"event": "end",   "step", "max_steps", "elapsed_s", "time", "stopped"}
  `elapsed_s` counts from this process's "begin" (a resumed run starts again from 0 at its resume step), so a
  reader's rate is (step - begin step) / elapsed_s. A resumed run redoes the steps after its checkpoint: a reader
  keeps, for each step, the record written last (`read_progress` does).

- a clean stop: `StopFlag` catches SIGTERM/SIGINT and only records the request; the training loop looks at it at
  the end of a step, writes a checkpoint and leaves. HF recipes get both through `ProgressCallback`:

      progress = ProgressCallback(progress_path(ckpt))
      trainer = Seq2SeqTrainer(..., callbacks=[progress])
      trainer.train(resume_from_checkpoint=last)
      if progress.stopped:                      # checkpoint written; do not evaluate or publish a partial model
          raise SystemExit(stop_exit(trainer.state.global_step, ckpt))

  A loop of its own (PPO) uses the two parts directly:

      stop = StopFlag().install()
      with ProgressWriter(progress_path(ckpt), max_steps=config.steps) as progress:
          progress.begin(start_step)
          for step in ...:
              row = train_step(...)
              progress.log(step + 1, **row)            # reward_mean, kl, toxicity_mean, words, ...
              if stop.requested: save_checkpoint(...); progress.end(step + 1, stopped=True); break
      stop.restore()

A stopped run exits with STOPPED_EXIT_CODE (75, sysexits' EX_TEMPFAIL: "try again later"): its checkpoint is
complete and running the same command resumes it. A second SIGTERM/SIGINT while a stop is pending is passed on to
the handler that was there before (the default ends the process): an impatient user is not ignored.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

PROGRESS_FILE = "progress.jsonl"
STOPPED_EXIT_CODE = 75  # sysexits EX_TEMPFAIL: stopped on request, checkpoint written, the same command resumes
LOG_KEYS = ("loss", "learning_rate", "grad_norm", "epoch")  # what an HF Trainer logs at each logging step
SUMMARY_PREFIXES = ("train_", "eval_", "test_", "predict_")  # logs that are not points of the training curves
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def progress_path(run_dir: str | Path) -> Path:
    """Where a run's live progress goes: beside its checkpoints, so the same command (and a restarted app) finds it."""
    return Path(run_dir) / PROGRESS_FILE


def stop_exit(step: int, run_dir: str | Path) -> int:
    """Say that the run stopped on request and how to resume it; returns the exit code a stopped run ends with."""
    print(f"[train] stopped on request after step {step}; checkpoint saved in {run_dir}. Run the same command again "
          "to resume.", flush=True)
    return STOPPED_EXIT_CODE


def _number(value):
    """A JSON-safe scalar: tensors and numpy numbers become floats, NaN/inf become None (JSON has neither)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value if isinstance(value, (str, bool)) or value is None else None
    return value if math.isfinite(value) else None


class ProgressWriter:
    """Appends progress records to a JSONL file, one line each, flushed at once (a reader tails it live).

    The file is opened line-buffered in append mode: a resumed run continues the same file, and a process killed
    mid-run leaves whole lines (a reader skips a torn last line)."""

    def __init__(self, path: str | Path, *, max_steps: int | None = None, tick_s: float = 1.0):
        self.path = Path(path)
        self.max_steps = max_steps
        self.tick_s = tick_s
        self._file = None
        self._clock = time.monotonic()
        self._last_tick = float("-inf")

    def __enter__(self) -> ProgressWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, record: dict) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # line-buffered append, kept open between records and closed in close()
            self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        clean = {k: _number(v) for k, v in record.items()}
        self._file.write(json.dumps(clean, separators=(",", ":")) + "\n")
        self._file.flush()

    def _record(self, event: str, step: int, **values) -> dict:
        return {"event": event, "step": int(step), "max_steps": self.max_steps,
                "elapsed_s": round(time.monotonic() - self._clock, 3), "time": round(time.time(), 3), **values}

    def begin(self, step: int = 0) -> None:
        """Training (re)starts at `step`: elapsed time counts from here."""
        self._clock = time.monotonic()
        self.write(self._record("begin", step))

    def tick(self, step: int) -> None:
        """Step/total for a progress bar: written at most once per `tick_s`, so a fast loop does not flood the file."""
        now = time.monotonic()
        if now - self._last_tick >= self.tick_s:
            self._last_tick = now
            self.write(self._record("step", step))

    def log(self, step: int, **values) -> None:
        """A logged point of the curves (loss, learning rate, ... or PPO's reward, KL, toxicity, length)."""
        self._last_tick = time.monotonic()
        self.write(self._record("log", step, **values))

    def end(self, step: int, *, stopped: bool = False) -> None:
        self.write(self._record("end", step, stopped=stopped))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StopFlag:
    """Turns SIGTERM/SIGINT into a request the training loop answers at a step boundary (checkpoint, then exit).

    Signal handlers can only be set from the main thread; elsewhere `install` does nothing and returns the flag
    unarmed (`installed` is False), and `request()` still works for callers that stop the loop themselves."""

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict = {}

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> StopFlag:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        """Put back the handlers that were there before `install` (at the end of training, e.g. before evaluation)."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def request(self, name: str = "request") -> None:
        self.requested = True
        self.signal_name = self.signal_name or name

    def _handle(self, signum, frame) -> None:
        if self.requested:  # asked twice: hand the signal to whoever handled it before (default: end the process)
            self.restore()
            os.kill(os.getpid(), signum)
            return
        self.request(signal.Signals(signum).name)
        print(f"\n[train] {self.signal_name} received: stopping after this step and writing a checkpoint (send it "
              "again to stop at once)", flush=True)


def _any_process(flag: bool, device) -> bool:
    """True on every process when any of them saw a stop request: under torchrun each rank gets the signal at its
    own moment, and ranks that stopped at different steps would hang in their next collective."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def read_progress(path: str | Path) -> list[dict]:
    """The records of a progress file as a reader should see them: torn or foreign lines skipped, and when a resumed
    run went back to an earlier step, the records after that step from before the resume dropped (they were redone)."""
    path = Path(path)
    if not path.is_file():
        return []
    out: list[dict] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            continue
        if row.get("event") == "begin":
            out = [r for r in out if r["step"] <= row["step"]]
        out.append(row)
    return out


def __getattr__(name: str):
    """`ProgressCallback` is built on first use: it subclasses transformers' TrainerCallback, and importing
    transformers takes seconds, which the readers of progress files (the app, PPO's loop, tests) need not pay."""
    if name == "ProgressCallback":
        globals()[name] = cls = _progress_callback_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _progress_callback_class():
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """transformers callback: live progress in a JSONL file (main process), clean stop on SIGTERM/SIGINT.

        On a stop request the callback sets `control.should_save` and `control.should_training_stop` at the end of
        the current step, so the Trainer writes a complete checkpoint (model, optimizer, scheduler, RNG,
        trainer_state) and returns from `train()`; `stopped` then tells the caller not to evaluate or publish (see
        the module docstring). The signal handlers are installed in on_train_begin, the previous ones restored in
        on_train_end."""

        def __init__(self, path: str | Path, *, stop: StopFlag | None = None, tick_s: float = 1.0):
            self.writer = ProgressWriter(path, tick_s=tick_s)
            self.stop = stop or StopFlag()
            self.stopped = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.stopped = False
            self.stop.install()
            self.writer.max_steps = state.max_steps
            if state.is_world_process_zero:
                self.writer.begin(state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.writer.tick(state.global_step)
            if _any_process(self.stop.requested, args.device) and state.global_step < state.max_steps:
                self.stop.request()
                self.stopped = True
                control.should_save = True
                control.should_log = True  # the last loss reaches the curve too
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            """Training logs only: the loss, learning rate, gradient norm and any other training metric the recipe
            logs (e.g. trl's rewards/margins); evaluation logs and the end-of-training summary (train_runtime...)
            are not points of the training curves."""
            if not (state.is_world_process_zero and logs):
                return
            values = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                      and not k.startswith(SUMMARY_PREFIXES) and k != "total_flos"}
            if set(values) - {"epoch"}:
                values.setdefault("epoch", state.epoch)
                self.writer.log(state.global_step, **values)

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.writer.end(state.global_step, stopped=self.stopped)
            self.writer.close()
            self.stop.restore()

    ProgressCallback.__module__ = __name__
    return ProgressCallback
