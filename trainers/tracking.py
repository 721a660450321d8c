"""Experiment tracking the ecosystem's way: `--report-to none|trackio|tensorboard|wandb`, whichever is installed.

The HF-Trainer recipes hand the choice to transformers (`TrainingArguments.report_to`, `project`, `run_name`); our own
loops (PPO) log through `LoopTracker`, to the same tools under the same project and run names. trackio is the
default to reach for: it is local-first (a SQLite file under `TRACKIO_DIR`, default `~/.cache/huggingface/trackio`)
and its dashboard is a Gradio app (`trackio show --project dialogue-workbench`), so it works offline. Nothing is
synced to a Space unless the user sets trackio's own Space variables.
"""

from __future__ import annotations

import importlib.util
import os

from trainers.options import ConfigError

TRACKERS = ("none", "trackio", "tensorboard", "wandb")
PROJECT = "dialogue-workbench"
_MODULE = {"trackio": "trackio", "tensorboard": "tensorboard", "wandb": "wandb"}


def installed() -> list[str]:
    """The trackers this environment can report to ("none" always)."""
    return ["none"] + [name for name in TRACKERS[1:] if importlib.util.find_spec(_MODULE[name]) is not None]


def check_report_to(name: str, value: str) -> None:
    """Refuse an unknown tracker, or one that is not installed, before any model loads."""
    if value not in TRACKERS:
        raise ConfigError(f"{name}: expected one of {', '.join(TRACKERS)}, got {value!r}")
    if value not in installed():
        raise ConfigError(f"{name}: {value} is not installed here (pip install {value}); installed: "
                          f"{', '.join(installed())}")


def trainer_arguments(report_to: str, run_id: str) -> dict:
    """The TrainingArguments keys that route an HF Trainer's logs to `report_to` under this project and run id."""
    if report_to == "none":
        return {"report_to": []}
    extra = {"trackio_static_space_id": False} if report_to == "trackio" else {}  # never freeze a Space copy
    return {"report_to": [report_to], "project": PROJECT, "run_name": run_id, **extra}


class LoopTracker:
    """`log(values, step)` / `finish()` for a training loop of our own, to the tracker the user chose. A resumed run
    continues the same tracker run (its name is the run id)."""

    def __init__(self, report_to: str, run_id: str, config: dict | None = None):
        self.kind, self._backend = report_to, None
        if report_to == "trackio":
            import trackio

            trackio.init(project=PROJECT, name=run_id, config=config or {}, resume="allow")
            self._backend = trackio
        elif report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            folder = os.environ.get("TENSORBOARD_LOGGING_DIR", os.path.join("runs", "tensorboard"))
            self._backend = SummaryWriter(os.path.join(folder, run_id))
        elif report_to == "wandb":
            import wandb

            self._backend = wandb.init(project=PROJECT, name=run_id, id=run_id, resume="allow", config=config or {})

    def log(self, values: dict, step: int) -> None:
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.kind == "trackio":
            self._backend.log(numbers, step=step)
        elif self.kind == "tensorboard":
            for key, value in numbers.items():
                self._backend.add_scalar(key, value, step)
        elif self.kind == "wandb":
            self._backend.log(numbers, step=step)

    def finish(self) -> None:
        if self.kind == "trackio":
            self._backend.finish()
        elif self._backend is not None:
            (self._backend.close if self.kind == "tensorboard" else self._backend.finish)()
