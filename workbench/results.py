"""The metrics JSON that trainers and the evaluator write and the dashboards read.

One file per run, `results/<run_id>.json`, schema_version 1 (see docs/ARCHITECTURE.md). Files are written atomically
and never overwritten: a run id names one run forever. Readers validate and skip what does not match the schema.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import secrets
import subprocess
from pathlib import Path

from workbench import paths
from workbench.io import atomic_write_json

SCHEMA_VERSION = 1
CI_KEYS = ("mean", "std", "n", "ci_low", "ci_high")
REQUIRED = {
    "schema_version": int, "run_id": str, "model_id": str, "method": str, "base_model": str, "params": dict,
    "dataset": dict, "metrics": dict, "generation": dict, "git_commit": str, "started_at": str,
    "finished_at": str, "wall_time_s": (int, float), "outputs_file": str,
}
METHODS = {"base", "zero-shot", "one-shot", "few-shot", "full", "lora", "ppo", "orpo", "cpo", "eval", "reward",
           "baseline"}
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# The headline metric each kind of run must carry (a CI over the record's dataset.n examples). A summarizer is
# measured by ROUGE; a reward model writes no summaries and is measured by how often it ranks held-out pairs right.
HEADLINE = {"reward": ("pairwise_accuracy",)}


class SchemaError(ValueError):
    """A metrics record that does not match the schema; the message names the field."""


def _check_ci(value, where: str) -> None:
    if not isinstance(value, dict):
        raise SchemaError(f"field {where}: expected an object with {', '.join(CI_KEYS)}")
    for key in CI_KEYS:
        number = value.get(key)
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
            raise SchemaError(f"field {where}.{key}: expected a finite number, got {number!r}")
    if value["ci_low"] > value["ci_high"]:
        raise SchemaError(f"field {where}: ci_low is above ci_high")
    if value["n"] < 1:
        raise SchemaError(f"field {where}.n: must be at least 1")


def validate(run: dict) -> dict:
    """Return `run` if it matches schema version 1, else raise SchemaError naming the first bad field."""
    if not isinstance(run, dict):
        raise SchemaError("the metrics record must be a JSON object")
    for key, kind in REQUIRED.items():
        if key not in run:
            raise SchemaError(f"field {key}: missing")
        if not isinstance(run[key], kind) or isinstance(run[key], bool):
            raise SchemaError(f"field {key}: expected {getattr(kind, '__name__', 'number')}, "
                              f"got {type(run[key]).__name__}")
    if run["schema_version"] != SCHEMA_VERSION:
        raise SchemaError(f"field schema_version: expected {SCHEMA_VERSION}, got {run['schema_version']}")
    if run["method"] not in METHODS:
        raise SchemaError(f"field method: {run['method']!r} is not one of {sorted(METHODS)}")
    for key in ("total", "trainable"):
        if not isinstance(run["params"].get(key), int) or run["params"][key] < 0:
            raise SchemaError(f"field params.{key}: expected a non-negative integer")
    for key, kind in (("id", str), ("split", str), ("n", int)):
        if not isinstance(run["dataset"].get(key), kind):
            raise SchemaError(f"field dataset.{key}: expected {kind.__name__}")
    required = HEADLINE.get(run["method"], ROUGE_KEYS)
    for key in required:
        if key not in run["metrics"]:
            raise SchemaError(f"field metrics.{key}: missing")
    for key, value in run["metrics"].items():
        if isinstance(value, dict) and "mean" in value:
            _check_ci(value, f"metrics.{key}")
    if not isinstance(run["metrics"][required[0]], dict) or "mean" not in run["metrics"][required[0]]:
        raise SchemaError(f"field metrics.{required[0]}: expected an object with {', '.join(CI_KEYS)}")
    if run["metrics"][required[0]]["n"] != run["dataset"]["n"]:
        raise SchemaError(f"field metrics.{required[0]}.n: differs from dataset.n")
    if run.get("training") is not None and not isinstance(run["training"], dict):
        raise SchemaError("field training: expected an object or null")
    return run


def write_metrics(run: dict, path: str | Path | None = None) -> Path:
    """Validate and write atomically; refuses to overwrite a finished run."""
    validate(run)
    path = Path(path) if path else paths.RESULTS_DIR / f"{run['run_id']}.json"
    if path.exists():
        raise FileExistsError(f"{path}: a run with id {run['run_id']} already exists; runs are never overwritten")
    return atomic_write_json(path, run)


def read(path: str | Path) -> dict:
    try:
        return validate(json.loads(Path(path).read_text(encoding="utf-8")))
    except json.JSONDecodeError as err:
        raise SchemaError(f"{path}: not valid JSON ({err})") from err


def list_runs(results_dir: str | Path | None = None) -> list[dict]:
    """Every valid run in the folder, oldest first; invalid files are skipped."""
    folder = Path(results_dir) if results_dir else paths.RESULTS_DIR
    runs = []
    for path in sorted(folder.glob("*.json")):
        try:
            runs.append(read(path))
        except (SchemaError, OSError):
            continue
    return sorted(runs, key=lambda r: (r["finished_at"], r["run_id"]))


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(method: str) -> str:
    """`<method>-<UTC timestamp>-<random>`: sortable and unique."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{method}-{stamp}-{secrets.token_hex(3)}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                             timeout=5)
        commit = out.stdout.strip()
        if out.returncode != 0 or not commit:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=paths.REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def to_frame(runs: list[dict]):
    """One row per run and metric: run_id, model_id, method, metric, mean, ci_low, ci_high, n, trainable ..."""
    import pandas as pd

    rows = []
    for run in runs:
        for metric, value in run["metrics"].items():
            if isinstance(value, dict) and "mean" in value:
                rows.append({"run_id": run["run_id"], "model_id": run["model_id"], "method": run["method"],
                             "metric": metric, "mean": value["mean"], "ci_low": value["ci_low"],
                             "ci_high": value["ci_high"], "n": value["n"], "trainable": run["params"]["trainable"],
                             "total": run["params"]["total"], "dataset": run["dataset"]["id"],
                             "split": run["dataset"]["split"], "git_commit": run["git_commit"],
                             "finished_at": run["finished_at"]})
    return pd.DataFrame(rows)
