"""The metrics record that trainers and the evaluator write and the dashboards read: one pydantic model per part.

One file per run, `results/<run_id>.json`, schema_version 1 (see docs/ARCHITECTURE.md). Files are written atomically
and never overwritten: a run id names one run forever. The one exception is a re-evaluation of the same run with new
decoding settings (`trainers.reevaluate`): its metrics, outputs and generation are replaced, and
`generation.reevaluated_at` says so. Readers validate and skip what does not match the schema.
This is the single source of a run's metrics: the copy published with a model (its metrics.json in the store) is
written from the same record by `store.publish_run`, and, like a Hub commit, keeps the scores it was published with.

The parts whose keys are fixed (a metric's CI, params, dataset, generation, the record itself) refuse unknown keys,
so a typo or a field a newer writer added is caught where it is written, not where a chart reads it. `training` is
each method's own free-form description (a reward model and a PPO run train on different things) and stays open.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
                      model_validator)

from workbench import paths
from workbench.io import atomic_write_json

SCHEMA_VERSION = 1
CI_KEYS = ("mean", "std", "n", "ci_low", "ci_high")
METHOD_NAMES = ("base", "zero-shot", "one-shot", "few-shot", "full", "lora", "ppo", "orpo", "cpo", "eval", "reward",
                "baseline")
METHODS = set(METHOD_NAMES)
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# The headline metric each kind of run must carry (a CI over the record's dataset.n examples). A summarizer is
# measured by ROUGE; a reward model writes no summaries and is measured by how often it ranks held-out pairs right.
HEADLINE = {"reward": ("pairwise_accuracy",)}

Finite = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]


class SchemaError(ValueError):
    """A metrics record that does not match the schema; the message names the field."""


class _Closed(BaseModel):
    """Strict (no "1" for 1, no true for 1) and closed: an unknown key is an error, not silently kept."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Metric(_Closed):
    """A mean over `n` examples with its 95% bootstrap CI (scoring.mean_ci)."""

    mean: Finite
    std: Finite
    n: Annotated[int, Field(ge=1)]
    ci_low: Finite
    ci_high: Finite

    @model_validator(mode="after")
    def _ordered(self) -> Metric:
        if self.ci_low > self.ci_high:
            raise ValueError("ci_low is above ci_high")
        return self


def _metric_kind(value: Any) -> str:
    """A metric entry with a "mean" is a CI and checked as one; anything else (e.g. a reward run's train_pairs
    count) is a plain note."""
    return "ci" if isinstance(value, Metric) or (isinstance(value, dict) and "mean" in value) else "note"


MetricEntry = Annotated[Annotated[Metric, Tag("ci")] | Annotated[Any, Tag("note")], Discriminator(_metric_kind)]


class Params(_Closed):
    total: Count
    trainable: Count
    trainable_share: Finite | None = None


class Dataset(_Closed):
    """What was evaluated; with a split_info (data.load_train_eval) also whether it was held out of training."""

    id: str
    split: str
    n: Count
    held_out: bool | None = None
    train_n: Count | None = None
    holdout_seed: int | None = None
    note: str | None = None


class Generation(_Closed):
    """generation.GenerationSettings.as_dict() plus how the evaluation ran; {} for a run that generates nothing."""

    max_new_tokens: int | None = None
    num_beams: int | None = None
    do_sample: bool | None = None
    temperature: Finite | None = None
    top_k: int | None = None
    top_p: Finite | None = None
    repetition_penalty: Finite | None = None
    no_repeat_ngram_size: int | None = None
    copy_bias: Finite | None = None  # absent in runs made before it existed: no bias
    model_copy_bias: Finite | None = None  # the bias the model was trained with (config.copy_bias), added to copy_bias
    # True where that bias boosted word starts alone (config.copy_inner; absent in runs made before: every piece)
    model_copy_word_starts: bool | None = None
    min_new_tokens: int | None = None
    model_min_new_tokens: int | None = None  # the model's own minimum (generation_config), applied over min_new_tokens
    model_no_repeat_ngram_size: int | None = None  # the model's own (generation_config), the stricter one applies
    prompt: str | None = None
    batch_size: int | None = None
    dtype: str | None = None
    seconds: Finite | None = None
    scorer: str | None = None
    engine: str | None = None  # "ctranslate2" when that engine generated (None: PyTorch, as every earlier run)
    reevaluated_at: str | None = None  # set when the outputs were regenerated after the run (trainers.reevaluate)


class Run(_Closed):
    """One run's record. `revision` is the store revision of the published model (None until it is published)."""

    schema_version: int
    run_id: str
    model_id: str
    revision: str | None = None
    method: Literal[METHOD_NAMES]
    base_model: str
    params: Params
    dataset: Dataset
    metrics: dict[str, MetricEntry]
    generation: Generation
    training: dict[str, Any] | None = None
    git_commit: str
    started_at: str
    finished_at: str
    wall_time_s: Finite
    outputs_file: str

    @field_validator("schema_version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"expected {SCHEMA_VERSION}, got {value}")
        return value

    @model_validator(mode="after")
    def _headline(self) -> Run:
        """The method's headline metric is there, is a CI, and covers every evaluated example."""
        required = HEADLINE.get(self.method, ROUGE_KEYS)
        for key in required:
            if key not in self.metrics:
                raise ValueError(f"field metrics.{key}: missing")
        headline = self.metrics[required[0]]
        if not isinstance(headline, Metric):
            raise ValueError(f"field metrics.{required[0]}: expected an object with {', '.join(CI_KEYS)}")
        if headline.n != self.dataset.n:
            raise ValueError(f"field metrics.{required[0]}.n: differs from dataset.n")
        return self

    def ci_metrics(self) -> dict[str, Metric]:
        """The metrics that are means with CIs, by name (the notes left out)."""
        return {key: value for key, value in self.metrics.items() if isinstance(value, Metric)}


def _message(err: ValidationError) -> str:
    """The first problem as one line naming the field: `field metrics.rouge1.mean: input should be a finite number`."""
    first = err.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    if len(loc) > 2 and loc[0] == "metrics":
        del loc[2]  # the tag that says which kind of metric entry it was checked as
    if first["type"] == "missing":
        text = "missing"
    elif first["type"] == "extra_forbidden":
        text = f"not a field of schema version {SCHEMA_VERSION}"
    elif first["type"] == "value_error":
        text = str(first["ctx"]["error"])
    else:
        shown = repr(first["input"])
        text = f"{first['msg'][:1].lower()}{first['msg'][1:]}, got {shown[:60]}"
    return f"field {'.'.join(loc)}: {text}" if loc else text


def parse(run: Any) -> Run:
    """The typed record, or SchemaError naming the first bad field."""
    if not isinstance(run, dict):
        raise SchemaError("the metrics record must be a JSON object")
    try:
        return Run.model_validate(run)
    except ValidationError as err:
        raise SchemaError(_message(err)) from None


def validate(run: dict) -> dict:
    """Return `run` itself (the dict, unchanged) if it matches schema version 1, else raise SchemaError naming the
    first bad field."""
    parse(run)
    return run


def write_metrics(run: dict, path: str | Path | None = None, *, replace: bool = False) -> Path:
    """Validate and write atomically; refuses to overwrite a finished run unless `replace` (a re-evaluation of that
    same run, trainers.reevaluate)."""
    validate(run)
    path = Path(path) if path else paths.RESULTS_DIR / f"{run['run_id']}.json"
    if path.exists() and not replace:
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
