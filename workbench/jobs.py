"""Training runs started from the app: the trainer CLIs as subprocesses, one at a time, with a queue, stop and resume.

No gradio here: the Train tab (workbench/ui/train.py) is a thin layer over `TrainingJobs`.

    jobs = TrainingJobs()                                      # state in runs/jobs/, a monitor thread
    job = jobs.start(TrainRequest(recipe="lora", model="demo/flan-t5-demo-base", dataset="demo", max_steps=200))
    jobs.command_line(job.id)        # "python -m trainers.lora --model demo/flan-t5-demo-base --dataset demo ..."
    jobs.status(job.id)              # state, step/total, elapsed, ETA, log tail, return code
    jobs.curves(job.id)              # long DataFrame: step, metric, value (loss; PPO reward, KL, toxicity, length)
    jobs.stop(job.id); jobs.resume(job.id)

Why it is built this way:
- The tab runs exactly the command it shows, nothing else: a request is validated field by field against fixed
  choices (recipes, store models, datasets) and ranges, and becomes an argument list (never a shell string), so
  nothing a user types is interpreted by a shell or reaches the trainer as a path or an extra option.
- One run at a time per app (a training run takes every core); later requests wait in a FIFO queue, state "queued".
- Stop sends SIGTERM to the run's process group: the trainer finishes its step, writes a checkpoint and exits with
  trainers.callbacks.STOPPED_EXIT_CODE; after `stop_timeout` seconds the group is killed. Resume runs the same
  command again (without --fresh): the trainers resume from their last complete checkpoint, as on the command line.
- The trainer runs in its own session, so it survives the app: each job's command and state are kept in
  runs/jobs/<id>.json, and an app restarted after a SIGKILL adopts a run that is still going (and can stop it) or
  marks one that died "interrupted", which Resume continues from its checkpoint.
- Progress comes from the trainer's live progress file (trainers.callbacks: <checkpoint folder>/progress.jsonl);
  a trainer that does not write one yet still gets curves from its results/logs/<run id>.jsonl.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd

from trainers.callbacks import STOPPED_EXIT_CODE, progress_path, read_progress
from workbench import data, paths
from workbench.io import atomic_write_json, read_jsonl

RECIPES = {"full": "trainers.full", "lora": "trainers.lora", "reward": "trainers.reward", "ppo": "trainers.ppo",
           "preference": "trainers.preference"}
RECIPE_LABELS = {"full": "Full fine-tune", "lora": "LoRA", "reward": "Reward model", "ppo": "PPO (detoxify a LoRA)",
                 "preference": "Preference optimisation (ORPO/CPO/SimPO on a LoRA)"}
PREFERENCE_LOSSES = {"orpo": "orpo", "cpo": "cpo", "simpo": "cpo"}  # loss -> method (its checkpoint folder)
REPORT_TO = ("none", "tensorboard", "trackio", "wandb")
DIALOGUE_DATASETS = {data.DEMO: "train", data.SHARED: "dev"}  # dataset choice -> split to train on (shared: dev only)
ACTIVE, FINISHED = ("queued", "running", "stopping"), ("done", "stopped", "failed", "interrupted", "cancelled")
RESUMABLE = ("stopped", "failed", "interrupted", "cancelled")
LIMITS = {"max_steps": (1, 100_000), "batch_size": (1, 256), "logging_steps": (1, 10_000), "save_steps": (1, 100_000),
          "train_limit": (1, 10_000_000), "eval_limit": (1, 10_000_000), "lora_r": (1, 256),
          "min_new_tokens": (1, 1024)}
CURVES = {"loss": "loss", "reward_mean": "reward", "kl": "KL", "toxicity_mean": "toxicity", "words": "length (words)"}
TAIL_LINES = 40
ENV_PREFIXES = ("WORKBENCH_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "OMP_", "MKL_", "CUDA_",
                "PYTORCH_", "TORCH_", "NCCL_", "TRACKIO_", "TENSORBOARD_", "WANDB_", "LC_")
ENV_NAMES = ("PATH", "HOME", "USER", "LANG", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "SSL_CERT_FILE", "NO_PROXY",
             "HTTPS_PROXY", "HTTP_PROXY")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class JobError(ValueError):
    """A request or action the jobs refuse, in one line that names the field or the job."""


# ------------------------------------------------------------------------------------------------ requests


@dataclasses.dataclass
class TrainRequest:
    """What the Train tab asks for. `model` is the start: a base model (full, lora; the tokenizer for reward) or a LoRA
    adapter (ppo, preference). `dataset` is a dialogue dataset (full, lora, ppo; preference: its evaluation data is
    the demo/dialogsum one and this names the preference dataset) or "demo" pairs (reward)."""

    recipe: str
    model: str
    dataset: str
    output: str | None = None
    max_steps: int = 200
    learning_rate: float | None = None  # None: the recipe's default
    batch_size: int | None = None
    logging_steps: int = 5
    save_steps: int = 50
    train_limit: int | None = None
    eval_limit: int | None = None
    lora_r: int | None = None
    min_new_tokens: int | None = None  # full, lora: the trained model's minimum summary length; None: the start's
    loss: str = "orpo"
    report_to: str = "none"
    fresh: bool = False


def _int(name: str, value, *, optional: bool = False) -> int | None:
    if value is None or value == "":
        if optional:
            return None
        raise JobError(f"{name}: required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise JobError(f"{name}: expected a whole number, got {str(value)[:40]!r}")
    low, high = LIMITS[name]
    if not low <= int(value) <= high:
        raise JobError(f"{name}: must be between {low} and {high}, got {int(value)}")
    return int(value)


def _store_name(name: str, value) -> str:
    from workbench.store import StoreError, validate_repo_id

    if not isinstance(value, str):
        raise JobError(f"{name}: expected a store name (namespace/name)")
    try:
        return validate_repo_id(value.strip())
    except StoreError as err:
        raise JobError(f"{name}: {err}") from None


def _model_kind(folder: Path) -> str | None:
    """'adapter' (a LoRA adapter), 'seq2seq' (a T5-style model) or None (anything else, e.g. a reward model)."""
    import json

    if (folder / "adapter_config.json").is_file():
        return "adapter"
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    architectures = config.get("architectures") or []
    return "seq2seq" if config.get("model_type") == "t5" or any("ConditionalGeneration" in a for a in architectures) \
        else None


def store_models(kind: str) -> list[str]:
    """Local store repos of one kind ('seq2seq' or 'adapter'), by their current revision."""
    from workbench.store import LocalStore, StoreError

    local, out = LocalStore(), []
    for repo in local.list_repos():
        try:
            folder = local.repo_dir(repo) / "revisions" / local.head(repo)
        except (StoreError, OSError):
            continue
        if _model_kind(folder) == kind:
            out.append(repo)
    return out


def preference_datasets() -> list[str]:
    try:
        from workbench import preferences

        return preferences.list_datasets()
    except (ImportError, OSError):
        return []


def recipes() -> list[str]:
    """The recipes this checkout has (preference optimisation only where trainers/preference.py exists)."""
    return [r for r, module in RECIPES.items() if (paths.REPO_ROOT / (module.replace(".", "/") + ".py")).is_file()]


def dialogue_datasets() -> list[str]:
    """The fixed dataset choices that exist on this machine (users never give paths)."""
    return data.available(DIALOGUE_DATASETS)


def model_choices(recipe: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Start models a recipe accepts: base models for full/lora/reward (plus `extra`, e.g. the served config's Hub
    ids), LoRA adapters for ppo/preference."""
    if recipe in ("ppo", "preference"):
        return store_models("adapter")
    return sorted(set(store_models("seq2seq")) | set(extra))


def dataset_choices(recipe: str) -> list[str]:
    if recipe == "reward":
        return ["demo"]
    if recipe == "preference":
        return preference_datasets()
    return dialogue_datasets()


def report_to_choices() -> list[str]:
    """'none' plus the experiment trackers installed here (what transformers' report_to can use)."""
    import importlib.util

    modules = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",), "wandb": ("wandb",)}
    return ["none"] + [name for name, mods in modules.items() if any(importlib.util.find_spec(m) for m in mods)]


def method_of(request: TrainRequest) -> str:
    """The method name a run records and its checkpoint folder is named after (runs/<method>/<output>)."""
    return PREFERENCE_LOSSES[request.loss] if request.recipe == "preference" else request.recipe


def default_output(request: TrainRequest) -> str:
    from trainers.common import default_output as named

    return named(method_of(request), request.model, request.dataset)


def validate(request: TrainRequest, *, extra_models: tuple[str, ...] = ()) -> TrainRequest:
    """The request, checked field by field against the fixed choices and ranges, with the output name filled in."""
    if request.recipe not in recipes():
        raise JobError(f"recipe: expected one of {', '.join(recipes())}, got {str(request.recipe)[:40]!r}")
    models = model_choices(request.recipe, extra_models)
    if request.model not in models:
        raise JobError(f"model: {str(request.model)[:80]!r} is not a start model for {request.recipe} "
                       f"(choose one of: {', '.join(models) or 'none in the store'})")
    datasets = dataset_choices(request.recipe)
    if request.dataset not in datasets:
        raise JobError(f"dataset: {str(request.dataset)[:80]!r} is not available for {request.recipe} "
                       f"(choose one of: {', '.join(datasets) or 'none yet'})")
    if request.recipe == "preference" and request.loss not in PREFERENCE_LOSSES:
        raise JobError(f"loss: expected one of {', '.join(PREFERENCE_LOSSES)}, got {str(request.loss)[:40]!r}")
    if request.report_to not in REPORT_TO:
        raise JobError(f"report_to: expected one of {', '.join(REPORT_TO)}, got {str(request.report_to)[:40]!r}")
    lr = request.learning_rate
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1
                           or not math.isfinite(lr)):
        raise JobError(f"learning_rate: must be a number in (0, 1), got {str(lr)[:40]!r}")
    checked = {name: _int(name, getattr(request, name), optional=name not in ("max_steps", "logging_steps",
                                                                                  "save_steps"))
               for name in ("max_steps", "batch_size", "logging_steps", "save_steps", "train_limit", "eval_limit",
                            "lora_r", "min_new_tokens")}
    output = _store_name("output", request.output) if request.output not in (None, "") else None
    request = dataclasses.replace(request, learning_rate=None if lr is None else float(lr), output=output,
                                  fresh=bool(request.fresh), **checked)
    if request.output is None:
        request.output = default_output(request)
    if request.output.split("/")[0] == "demo":
        raise JobError(f"output: {request.output} is a name of the served demo family; choose another name")
    return request


def _flag(argv: list[str], name: str, value) -> None:
    if value is not None:
        argv += [name, str(value)]


def build_argv(request: TrainRequest) -> list[str]:
    """The trainer command for a validated request, as arguments after the Python executable: `-m trainers.X ...`."""
    r = request
    argv = ["-m", RECIPES[r.recipe]]
    if r.recipe in ("full", "lora", "ppo"):
        _flag(argv, "--policy" if r.recipe == "ppo" else "--model", r.model)
        _flag(argv, "--dataset", r.dataset)
        if DIALOGUE_DATASETS.get(r.dataset, "train") != "train":
            _flag(argv, "--train-split", DIALOGUE_DATASETS[r.dataset])
        _flag(argv, "--steps" if r.recipe == "ppo" else "--max-steps", r.max_steps)
        _flag(argv, "--train-limit", r.train_limit)
        _flag(argv, "--eval-limit", r.eval_limit)
    elif r.recipe == "reward":
        argv += ["--tokenizer", r.model, "--pairs", r.dataset, "--max-steps", str(r.max_steps)]
    else:  # preference
        argv += ["--policy", r.model, "--preferences", r.dataset, "--loss", r.loss, "--max-steps", str(r.max_steps)]
        _flag(argv, "--eval-limit", r.eval_limit)
    _flag(argv, "--learning-rate", r.learning_rate)
    _flag(argv, "--batch-size", r.batch_size)
    if r.recipe == "ppo" and r.batch_size is not None:
        _flag(argv, "--mini-batch-size", math.gcd(r.batch_size, 8))  # must divide the batch; 8 is the default
    if r.recipe in ("full", "lora", "preference"):
        _flag(argv, "--logging-steps", r.logging_steps)
    if r.recipe != "reward":
        _flag(argv, "--save-steps", r.save_steps)
    if r.recipe == "lora":
        _flag(argv, "--lora-r", r.lora_r)
    if r.recipe in ("full", "lora"):
        _flag(argv, "--min-new-tokens", r.min_new_tokens)
    if r.report_to != "none":
        _flag(argv, "--report-to", r.report_to)
    _flag(argv, "--output", r.output)
    if r.fresh:
        argv.append("--fresh")
    return argv


def command_line(argv: list[str]) -> str:
    """The command as a user would type it in the repository (copyable; `python` rather than this machine's path)."""
    return shlex.join(["python", *argv])


# ------------------------------------------------------------------------------------------------ jobs


@dataclasses.dataclass
class Job:
    id: str
    request: dict
    argv: list[str]
    resume_argv: list[str]
    method: str
    run_dir: str
    state: str = "queued"
    created_at: float = 0.0
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    pid: int | None = None
    returncode: int | None = None
    attempts: int = 0
    stop_deadline: float | None = None
    message: str = ""

    @property
    def output(self) -> str:
        return self.request.get("output") or ""


def _alive(pid: int | None, module: str) -> bool:
    """Is `pid` still our trainer? A pid is reused once its process is gone, so its command line must name the
    trainer's module (where /proc exists), and a zombie counts as gone."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: the pid answered, trust it
    return state != "Z" and module.encode() in cmdline


class TrainingJobs:
    """Runs training requests one at a time, keeps each job's state in `runs_dir/jobs/<id>.json`, and watches the
    running process from a daemon thread (every `poll_s` seconds) so that the queue moves with no page open."""

    def __init__(self, runs_dir: str | Path | None = None, *, stop_timeout: float = 120.0, poll_s: float = 0.5,
                 monitor: bool = True, extra_models: tuple[str, ...] = (), python: str = sys.executable,
                 modules: dict[str, str] | None = None):
        default = Path(os.environ.get("WORKBENCH_RUNS", paths.REPO_ROOT / "runs"))  # = trainers.common.RUNS_DIR
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default
        self.jobs_dir = self.runs_dir / "jobs"
        self.stop_timeout = stop_timeout
        self.extra_models = tuple(extra_models)
        self.python = python
        self.modules = dict(modules or {})  # recipe -> module to run instead of RECIPES[recipe] (tests: a fake one)
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._load()
        self._closed = threading.Event()
        self._thread = None
        if monitor:
            self._thread = threading.Thread(target=self._watch, args=(poll_s,), name="training-jobs", daemon=True)
            self._thread.start()

    # -------------------------------------------------------------------------------------------- persistence

    def _path(self, job: Job) -> Path:
        return self.jobs_dir / f"{job.id}.json"

    def log_path(self, job: Job) -> Path:
        return self.jobs_dir / f"{job.id}.log"

    def _save(self, job: Job) -> None:
        atomic_write_json(self._path(job), dataclasses.asdict(job))

    def _load(self) -> None:
        """Jobs from before a restart: a run still going is adopted; one that died with the app is 'interrupted'."""
        import json

        for path in sorted(self.jobs_dir.glob("*.json")) if self.jobs_dir.is_dir() else []:
            try:
                raw = json.loads(path.read_text())
                job = Job(**{f.name: raw[f.name] for f in dataclasses.fields(Job) if f.name in raw})
            except (OSError, ValueError, TypeError):
                continue
            if job.state in ("running", "stopping") and not _alive(job.pid, job.argv[1]):
                self._finish(job, None)
            self._jobs[job.id] = job

    def close(self) -> None:
        """Stop watching (the running trainer, if any, goes on and is adopted by the next TrainingJobs)."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -------------------------------------------------------------------------------------------- actions

    def preview(self, request: TrainRequest) -> tuple[TrainRequest, str]:
        """(the validated request, the exact command it runs): what the tab shows before Start."""
        request = validate(request, extra_models=self.extra_models)
        return request, command_line(self._argv(request))

    def _argv(self, request: TrainRequest) -> list[str]:
        argv = build_argv(request)
        argv[1] = self.modules.get(request.recipe, argv[1])
        return argv

    def start(self, request: TrainRequest) -> Job:
        """Queue a run (it starts at once when nothing else runs). Refused while another active job trains into the
        same checkpoint folder."""
        request = validate(request, extra_models=self.extra_models)
        method = method_of(request)
        run_dir = self.runs_dir / method / request.output.replace("/", "--")
        argv = self._argv(request)
        resume = self._argv(dataclasses.replace(request, fresh=False))
        now = time.time()
        job = Job(id=time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + uuid.uuid4().hex[:6],
                  request=dataclasses.asdict(request), argv=argv, resume_argv=resume, method=method,
                  run_dir=str(run_dir), created_at=now, queued_at=now)
        with self._lock:
            self._refuse_same_folder(job)
            self._jobs[job.id] = job
            self._save(job)
            self.poll()
        return job

    def _refuse_same_folder(self, job: Job) -> None:
        for other in self._jobs.values():
            if other.id != job.id and other.state in ACTIVE and other.run_dir == job.run_dir:
                raise JobError(f"job {other.id} ({other.state}) already trains {job.output}; stop it or choose "
                               "another output name")

    def stop(self, job_id: str) -> Job:
        """A queued job is cancelled; a running one gets SIGTERM (checkpoint, then exit), SIGKILL after the timeout."""
        with self._lock:
            job = self.get(job_id)
            if job.state == "queued":
                job.state, job.message = "cancelled", "cancelled before it started"
            elif job.state == "running":
                self._signal(job, signal.SIGTERM)
                job.state, job.stop_deadline = "stopping", time.time() + self.stop_timeout
                job.message = "stop requested: the trainer writes a checkpoint and exits"
            elif job.state != "stopping":
                raise JobError(f"job {job_id} is {job.state}; only a queued or running job can be stopped")
            self._save(job)
            return job

    def resume(self, job_id: str) -> Job:
        """Queue the same command again (without --fresh): the trainer continues from its last checkpoint."""
        with self._lock:
            job = self.get(job_id)
            if job.state not in RESUMABLE:
                raise JobError(f"job {job_id} is {job.state}; only a stopped, failed, interrupted or cancelled job "
                               "can be resumed")
            self._refuse_same_folder(job)
            job.state, job.queued_at, job.returncode, job.message = "queued", time.time(), None, "resume queued"
            job.argv, job.stop_deadline = list(job.resume_argv), None
            self._save(job)
            self.poll()
            return job

    def _signal(self, job: Job, sig: int) -> None:
        try:
            os.killpg(job.pid, sig)  # the trainer leads its own process group (start_new_session)
        except (ProcessLookupError, PermissionError, TypeError):
            pass

    # -------------------------------------------------------------------------------------------- the loop

    def _watch(self, poll_s: float) -> None:
        while not self._closed.wait(poll_s):
            try:
                self.poll()
            except Exception as err:  # noqa: BLE001 - the watcher must outlive one bad poll
                print(f"[jobs] watcher: {type(err).__name__}: {err}", file=sys.stderr)

    def poll(self) -> None:
        """Notice a finished run, enforce a stop's deadline, start the next queued job."""
        with self._lock:
            for job in [j for j in self._jobs.values() if j.state in ("running", "stopping")]:
                proc = self._procs.get(job.id)
                if proc is not None:
                    code = proc.poll()
                    if code is not None:
                        self._procs.pop(job.id)
                        self._finish(job, code)
                        continue
                elif not _alive(job.pid, job.argv[1]):  # adopted after a restart: no return code to read
                    self._finish(job, None)
                    continue
                if job.state == "stopping" and job.stop_deadline and time.time() > job.stop_deadline:
                    self._signal(job, signal.SIGKILL)
            if not any(j.state in ("running", "stopping") for j in self._jobs.values()):
                queued = sorted((j for j in self._jobs.values() if j.state == "queued"), key=lambda j: j.queued_at)
                if queued:
                    self._launch(queued[0])

    def _launch(self, job: Job) -> None:
        log = self.log_path(job)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"\n$ {command_line(job.argv)}\n")
            handle.flush()
            try:
                proc = subprocess.Popen([self.python, *job.argv], cwd=paths.REPO_ROOT, env=self.environment(),
                                        stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as err:
                job.state, job.message = "failed", f"could not start: {err}"
                self._save(job)
                return
        self._procs[job.id] = proc
        job.state, job.pid, job.attempts = "running", proc.pid, job.attempts + 1
        job.started_at, job.finished_at, job.returncode, job.message = time.time(), None, None, ""
        if job.attempts == 1:
            job.created_at = job.started_at
        self._save(job)

    def _finish(self, job: Job, code: int | None) -> None:
        stopping = job.state == "stopping"
        job.returncode, job.finished_at, job.stop_deadline = code, time.time(), None
        completed = (Path(job.run_dir) / "COMPLETED").is_file()
        if code == 0 or (code is None and completed):
            job.state, job.message = "done", f"finished: {job.output} published"
        elif stopping and code == -signal.SIGKILL:
            job.state = "stopped"
            job.message = (f"stopped: no clean exit within {self.stop_timeout:.0f} s, so it was killed; Resume "
                           "continues from the last complete checkpoint")
        elif code == STOPPED_EXIT_CODE or (stopping and code is not None):
            job.state = "stopped"
            job.message = f"stopped (exit {code}); Resume continues from the last checkpoint"
        elif code is None:
            job.state = "interrupted"
            job.message = "the app stopped while this run was going; Resume continues from the last checkpoint"
        else:
            job.state, job.message = "failed", f"failed (exit {code}); see the log"
        self._save(job)

    def environment(self) -> dict[str, str]:
        """The trainer's environment: only what training needs (WORKBENCH_* and the ML libraries' own variables),
        with the folders this app uses, so the trainer publishes where the app reads."""
        env = {k: v for k, v in os.environ.items() if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}
        env.update(WORKBENCH_RUNS=str(self.runs_dir), WORKBENCH_STORE=str(paths.STORE_DIR),
                   WORKBENCH_RESULTS=str(paths.RESULTS_DIR), WORKBENCH_DEMO_DATA=str(paths.DEMO_DATA_DIR),
                   WORKBENCH_DIALOGSUM=str(paths.SHARED_DIALOGSUM), PYTHONUNBUFFERED="1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    # -------------------------------------------------------------------------------------------- reading

    def get(self, job_id: str) -> Job:
        with self._lock:
            if job_id not in self._jobs:
                raise JobError(f"no job {str(job_id)[:40]!r}")
            return self._jobs[job_id]

    def jobs(self) -> list[Job]:
        """Every job, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True)

    def current(self) -> Job | None:
        """The job the tab shows by default: the running one, else the next queued one, else the newest."""
        jobs = self.jobs()
        for states in (("running", "stopping"), ("queued",)):
            active = sorted((j for j in jobs if j.state in states), key=lambda j: j.queued_at)
            if active:
                return active[0]
        return jobs[0] if jobs else None

    def command_line(self, job_id: str) -> str:
        return command_line(self.get(job_id).argv)

    def status(self, job_id: str | None = None) -> dict:
        """What the tab shows about a job: state, step/total, elapsed, ETA, return code, command and log tail."""
        job = self.get(job_id) if job_id else self.current()
        if job is None:
            return {"job": None, "state": "idle", "message": "no training run yet", "queue": self.queue()}
        rows = _progress_rows(job)
        step, total, eta = _step_total_eta(rows)
        end = job.finished_at or time.time()
        return {"job": job.id, "state": job.state, "recipe": job.request.get("recipe"), "output": job.output,
                "step": step, "max_steps": total or job.request.get("max_steps"),
                "elapsed_s": round(end - job.started_at, 1) if job.started_at else None,
                "eta_s": eta if job.state == "running" else None, "returncode": job.returncode,
                "message": job.message, "attempts": job.attempts, "command": command_line(job.argv),
                "log_tail": self.log_tail(job.id), "queue": self.queue(),
                "can_stop": job.state in ("queued", "running"), "can_resume": job.state in RESUMABLE,
                "can_serve": job.state == "done" and job.method != "reward"}

    def queue(self) -> list[dict]:
        with self._lock:
            waiting = sorted((j for j in self._jobs.values() if j.state in ACTIVE), key=lambda j: j.queued_at)
        return [{"job": j.id, "state": j.state, "recipe": j.request.get("recipe"), "output": j.output,
                 "position": i} for i, j in enumerate(waiting)]

    def log_tail(self, job_id: str, lines: int = TAIL_LINES) -> str:
        """The end of the run's output as a terminal shows it: a progress bar redrawn with \\r keeps only its latest
        state, colours are dropped, and anything shaped like a Hub token is masked."""
        from workbench.store import redact

        path = self.log_path(self.get(job_id))
        if not path.is_file():
            return ""
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 64_000))
            text = handle.read().decode("utf-8", errors="replace")
        text = _ANSI.sub("", text.replace("\r\n", "\n"))
        shown = [next((part for part in reversed(line.split("\r")) if part.strip()), "") for line in text.split("\n")]
        kept = [line for line in shown if line.strip()]
        return redact("\n".join(kept[-lines:]))

    def curves(self, job_id: str) -> pd.DataFrame:
        """Long-form training curves (step, metric, value) for Plotly: loss; for PPO reward, KL, toxicity, length."""
        rows = [r for r in _progress_rows(self.get(job_id)) if r.get("event", "log") == "log"]
        points = [{"step": r["step"], "metric": name, "value": float(r[key])}
                  for r in rows for key, name in CURVES.items()
                  if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        return pd.DataFrame(points, columns=["step", "metric", "value"])


def _progress_rows(job: Job) -> list[dict]:
    """The job's progress: the live progress file (records since the job first started), else the trainer's
    results/logs/<run id>.jsonl (written at checkpoints), so a trainer without the progress file still has curves."""
    since = (job.created_at or 0) - 1
    rows = [r for r in read_progress(progress_path(job.run_dir)) if (r.get("time") or 0) >= since]
    if rows:
        return rows
    run_id = Path(job.run_dir) / "run_id"
    try:
        log = paths.RESULTS_DIR / "logs" / f"{run_id.read_text().strip()}.jsonl"
        if run_id.stat().st_mtime < since or not log.is_file():
            return []
        return [{"event": "log", **r} for r in read_jsonl(log)
                if isinstance(r, dict) and isinstance(r.get("step"), int)]
    except (OSError, ValueError):
        return []


def _step_total_eta(rows: list[dict]) -> tuple[int | None, int | None, float | None]:
    """(last step, total steps, seconds left) from progress records: the rate is measured since the last (re)start."""
    if not rows:
        return None, None, None
    last = rows[-1]
    step, total = last.get("step"), last.get("max_steps")
    begin = next((r for r in reversed(rows) if r.get("event") == "begin"), None)
    eta = None
    if begin is not None and total and step is not None and step > begin["step"] and last.get("elapsed_s"):
        rate = (step - begin["step"]) / last["elapsed_s"]
        eta = round(max(total - step, 0) / rate, 1) if rate > 0 else None
    return step, total, eta


# ------------------------------------------------------------------------------------------------ serving


ADAPTER_METHODS = ("lora", "ppo", "orpo", "cpo")
DEFAULT_KINDS = {"full": "full", "lora": "adapter", "ppo": "adapter"}


def servable_slots(method: str, kinds: dict[str, str] | None = None) -> tuple[str, ...]:
    """Which of the app's slots can serve what a method produced: a full model a `full` slot, an adapter an `adapter`
    slot (it runs on the base slot's model), the slot named after the method first; a reward model no slot. `kinds`
    is slot -> kind of the running models config (default: full, LoRA and PPO)."""
    want = "full" if method == "full" else "adapter" if method in ADAPTER_METHODS else None
    slots = [s for s, kind in (kinds or DEFAULT_KINDS).items() if want and kind == want]
    return tuple(sorted(slots, key=lambda s: s != method))


def serve_in_slot(service, slot: str, output: str) -> dict:
    """Serve store model `output` (its newest revision) in `slot` through the same path as "Refresh models": the
    slot's spec in the running models config now names it (keeping its fallback), then service.reload() re-reads
    every slot. Returns the service's status summary (with "notice" when the reload was refused as too soon)."""
    from workbench.modelset import SlotSpec

    models = service.models
    if slot not in models.slots:
        raise JobError(f"slot: expected one of {', '.join(models.slots)}, got {str(slot)[:20]!r}")
    output = _store_name("output", output)
    old = models.config.slots.get(slot)
    spec = SlotSpec(ref=output, revision="main", fallback=old.fallback if old else None,
                    kind=old.kind if old else None, label=old.label if old else None)
    models.config = dataclasses.replace(models.config, slots={**models.config.slots, slot: spec})
    return service.reload()
