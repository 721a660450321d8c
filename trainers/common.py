"""What every recipe shares: seeding, precision, loading the starting model, tokenising, checkpoints that survive a
kill, and finishing a run (evaluate, publish, record) so that a run killed at any point completes when the same
command runs again."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from trainers.options import ConfigError, recipe_record
from workbench import data, dropout, modeling, paths, prompts, results, store
from workbench.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from workbench.paths import REPO_ROOT

RUNS_DIR = Path(os.environ.get("WORKBENCH_RUNS", REPO_ROOT / "runs"))  # checkpoints; not committed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _state():
    """accelerate's process state (shared by every caller, and by transformers' Trainer). On a machine without CUDA
    it is asked for CPU processes, as the Trainer's `use_cpu` does: a default state there would see no distributed
    launch at all, and every torchrun / accelerate-launch worker would think it is the main process."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def device() -> torch.device:
    """The one device this process computes on: `cuda:<local rank>` under a multi-GPU launch, `cuda` or `cpu` in a
    plain run. Every model and tensor of a trainer goes here, explicitly."""
    return _state().device


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun / accelerate launch."""
    return _state().is_main_process


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def end_distributed(accelerator=None) -> None:
    """Leave the process group. A worker that exits with it still open can die with SIGABRT (gloo's threads are torn
    down mid-flight), and the launcher then kills the main process while it evaluates. destroy_process_group alone
    does not close it: a DistributedDataParallel wrapper's reducer holds gloo's process group, threads and all, until
    the wrapper is collected, which without this happened during interpreter shutdown ("terminate called without an
    active exception", now and then). So the caller first drops its own references to the wrappers, and accelerate's
    (`accelerator.free_memory`) go here, while the interpreter is whole."""
    if _distributed():
        if accelerator is not None:
            accelerator.free_memory()
        gc.collect()
        _state().wait_for_everyone()  # all ranks leave together: none tears down its connections mid-collective
        _state().destroy_process_group()


def barrier() -> None:
    """Wait for every process (nothing to wait for in a plain run, or once the process group is gone)."""
    if _distributed():
        _state().wait_for_everyone()


def use_bf16(precision: str) -> bool:
    """bf16 autocast for training: 'auto' turns it on where the hardware computes bf16 natively."""
    if precision == "auto":
        return modeling.best_dtype() == torch.bfloat16
    return precision == "bf16"


def checkpoint_dir(config, method: str) -> Path:
    """Where a run keeps its checkpoints: the same command finds the same folder, so it can resume."""
    if getattr(config, "checkpoint_dir", None):
        return Path(config.checkpoint_dir)
    return RUNS_DIR / method / config.output.replace("/", "--")


def prepare_checkpoint_dir(path: Path, fresh: bool) -> None:
    """A completed run (marked by COMPLETED) or `fresh=True` starts over; otherwise checkpoints are kept. A finished
    run is never overwritten: the new run gets a new run id and a new store revision."""
    done = path / "COMPLETED"
    if path.exists() and (fresh or done.exists()):
        if done.exists():
            print(f"[run] the last run in {path} ({done.read_text().strip()}) finished; starting a new run "
                  "(its results and store revision stay as they are)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


_UNSET = object()


def guard_resume(ckpt: Path, settings: dict, fresh: bool) -> None:
    """Refuse to resume a checkpoint folder that another run's settings made.

    The first call (or any call with `fresh`) writes `ckpt/settings.json`; later calls compare. Resuming with other
    data, another start model or other hyper-parameters would continue the first run's optimizer, schedule and data
    order while the record claimed the new settings, so any difference is a ConfigError naming each key (old -> new)
    and the two ways out. `settings` holds only what determines the training, not evaluation or output options."""
    path = ckpt / "settings.json"
    settings = json.loads(json.dumps(settings, sort_keys=True))  # like for like: tuples -> lists, keys -> str
    if fresh or not path.exists():
        atomic_write_json(path, settings)
        return
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{path} is unreadable, so the unfinished run in {ckpt} cannot be checked; "
                          "add --fresh to discard it and start over") from None
    changed = [f"{key}: {_shown(before, key)} -> {_shown(settings, key)}"
               for key in sorted(set(before) | set(settings)) if before.get(key, _UNSET) != settings.get(key, _UNSET)]
    if changed:
        raise ConfigError(f"{ckpt} holds an unfinished run with other settings ({'; '.join(changed)}); run with the "
                          "same settings to resume it, or add --fresh to discard it and start over")


def _shown(settings: dict, key: str) -> str:
    return json.dumps(settings[key]) if key in settings else "(unset)"


def training_settings(config, exclude: set[str] | frozenset[str], **extra) -> dict:
    """The options of `config` that determine the training (for guard_resume), plus `extra` (method, data)."""
    import dataclasses

    return {**{k: v for k, v in dataclasses.asdict(config).items() if k not in exclude}, **extra}


def start_checkpoints(config, method: str, not_training: frozenset[str], texts: list[str], *,
                      run_method: str | None = None) -> tuple[Path, str]:
    """The run's checkpoint folder (prepared by the main process) and its run id. A folder holding an unfinished run
    with other training settings (the options outside `not_training`, and a fingerprint of the training `texts`) is
    refused here (guard_resume), before any model loads."""
    ckpt = checkpoint_dir(config, method)
    settings = training_settings(config, not_training, method=method, train_data=data_fingerprint(texts))
    if is_main_process():
        prepare_checkpoint_dir(ckpt, config.fresh)
        guard_resume(ckpt, settings, config.fresh)
        last_checkpoint(ckpt, remove_incomplete=True)  # a run killed while saving leaves half a checkpoint
    return ckpt, run_id_for(ckpt, run_method or method)  # run_id_for waits for the main process


def data_fingerprint(texts: list[str]) -> dict:
    """Row count and a hash of the training text: a file edited between two runs of the same command shows up."""
    digest = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()
    return {"n": len(texts), "sha256": digest[:16]}


def start(config, method: str, start_model: str, data_name: str, *, seed: int | None = None,
          announce: bool = True) -> Stopwatch:
    """A recipe's first step: seed every generator, quiet transformers' logs, and name the output when --output was
    not given (default_output). Returns the run's stopwatch."""
    watch = Stopwatch()
    seed_everything(config.seed if seed is None else seed)
    modeling.quiet_transformers()
    if config.output is None:
        config.output = default_output(method, start_model, data_name)
        if announce:
            print(f"[{method}] publishing to {config.output} (choose another name with --output)")
    return watch


def default_output(method: str, model: str, dataset: str) -> str:
    """A store name for a run that was given no --output: `local/<start model>-<dataset>-<method>`, e.g.
    "local/flan-t5-demo-base-demo-lora". Never a demo/* name, so a user's run cannot replace what the app serves
    unless the demo name is asked for explicitly (`make demo` does)."""
    def short(ref: str) -> str:
        name = Path(ref.rstrip("/\\")).name or ref
        return name[: -len(Path(name).suffix)] if Path(name).suffix in data.FILE_SUFFIXES else name

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{short(model)}-{short(dataset)}-{method}")
    name = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", ".", name)).strip("-._")[:96].rstrip("-._")
    return f"local/{name or method}"


def load_train_eval(config, *, fields: str = "dataset") -> tuple[list[dict], list[dict], dict]:
    """Training and evaluation rows (data.load_train_eval: a single file holds out a seeded evaluation part); a
    failure names the options that chose the data that failed (e.g. "dataset / eval_split")."""
    where, train_at, eval_at = "train_split", None, None
    try:
        train_at = data.resolve_source(config.dataset, config.train_split)
        where = "eval_split"
        eval_at = data.resolve_source(config.dataset, config.eval_split)
        where = None
        return data.load_train_eval(config.dataset, config.train_split, config.eval_split,
                                    train_limit=config.train_limit, eval_limit=config.eval_limit,
                                    **({"holdout": config.holdout} if hasattr(config, "holdout") else {}))
    except data.DataError as err:
        if where is None:  # loading failed: the message names the file, which tells the split
            where = "eval_split" if eval_at != train_at and str(eval_at) in str(err) else "train_split"
        raise data.DataError(f"{fields} / {where}: {err}") from None


def resolve_model(ref: str, revision: str = "main", *, field: str = "model") -> Path:
    """A store name, Hub id or local folder; a failure names the option it came from."""
    try:
        return store.resolve(ref, revision, allow_paths=True)
    except store.StoreError as err:
        raise store.StoreError(f"{field}: {err}") from None


def load_rows(source: str, split: str, *, limit: int | None = None, fields: str = "dataset") -> list[dict]:
    """Rows of a split; a failure names the options that chose it (e.g. "dataset / train_split")."""
    try:
        return data.load_dialogues(source, split, limit=limit)
    except data.DataError as err:
        raise data.DataError(f"{fields}: {err}") from None


# ------------------------------------------------------------------------------------------------ command line

USER_ERRORS = (ConfigError, data.DataError, store.StoreError)


def cli(main: Callable[[list[str]], object], argv: list[str] | None = None) -> int:
    """Run a trainer's `main` as a command. A mistake in what was asked for (options, data, model names) prints one
    line naming the option and exits with status 2 (the trainers check these before loading any model)."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------------------------------------ checkpoints

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def _complete_checkpoint(path: Path, step: int) -> bool:
    """transformers writes a checkpoint in place (weights, optimizer, scheduler, RNG, then trainer_state.json), so a
    process killed while saving leaves a folder that looks like a checkpoint but cannot be resumed from."""
    if not all((path / name).is_file() for name in _CHECKPOINT_FILES):
        return False
    if not any((path / name).is_file() for name in store.WEIGHT_FILES):
        return False
    try:
        return json.loads((path / "trainer_state.json").read_text()).get("global_step") == step
    except (OSError, ValueError):
        return False


def last_checkpoint(folder: Path, *, remove_incomplete: bool = False) -> str | None:
    """The newest complete transformers checkpoint in `folder` (None if there is none). With `remove_incomplete`
    (the main process, before the others look), half-written ones left by a kill are deleted."""
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
                   reverse=True)
    for step, path in found:
        if _complete_checkpoint(path, step):
            return str(path)
        if remove_incomplete:
            print(f"[checkpoint] {path.name} is incomplete (the run was killed while saving it); removing it")
            shutil.rmtree(path, ignore_errors=True)
    return None


def run_id_for(ckpt: Path, method: str) -> str:
    """The run's id, fixed when its checkpoint folder starts: a resumed run keeps its id, so a run killed at any point
    and finished later is recorded once. Call from every process (it waits for the main one)."""
    path = ckpt / "run_id"
    if is_main_process() and not path.exists():
        atomic_write_text(path, results.new_run_id(method) + "\n")
    barrier()
    return path.read_text().strip()


# ------------------------------------------------------------------------------------------------ finishing a run


def finish_run(*, run_id: str, ckpt: Path, folder: Path, output: str, push_to_hub: str | None,
               evaluate: Callable[[], dict], card: Callable[[dict], str]) -> dict:
    """Evaluate, publish and record a trained run, in an order that survives a kill at any point.

    1. `evaluate()` -> the metrics record (per-example outputs are written, the record is not)
    2. publish `folder` to the local store as a new revision (atomic: refs/main moves only once it is complete)
    3. write results/<run_id>.json with that revision (atomic, never overwritten): the run is now recorded
    4. push to the Hub if asked; 5. mark the checkpoint folder COMPLETED (the next run of the command starts afresh)

    Run again after a kill, the same command resumes the training (nothing left to do), then does only what had not
    been done: a run already published (the store's current revision carries its run id) is not evaluated or
    published again, and a recorded run is only pushed.
    """
    path = paths.RESULTS_DIR / f"{run_id}.json"
    for leftover in paths.RESULTS_DIR.glob(f".{run_id}.json.*.tmp"):  # a write that a kill interrupted
        leftover.unlink(missing_ok=True)
    if path.exists():
        run = results.read(path)
        print(f"[{run['method']}] run {run_id} is already evaluated and published ({output} revision "
              f"{run.get('revision')}); finishing it")
    else:
        run = _published_run(output, run_id)
        if run is None:
            run = evaluate()
            run = store.publish_run(folder, output, run, card=card(run))
        else:
            print(f"[{run['method']}] run {run_id} is already published ({output} revision {run['revision']}); "
                  "recording it")
        results.write_metrics(run, path)
    if push_to_hub:
        push(folder, push_to_hub, done=f"{output} revision {run['revision']} in the local store, results/{run_id}.json")
        print(f"[{run['method']}] pushed {output} to the Hub as {push_to_hub}")
    atomic_write_text(ckpt / "COMPLETED", run_id + "\n")
    return run


def push(folder: Path, repo_id: str, *, done: str) -> None:
    """Push a published folder to the Hub. A failure exits with status 1 and says that the local work (`done`) is
    complete and that running the same command again retries the push."""
    try:
        store.HubStore().publish(folder, repo_id)
    except store.StoreError as err:
        print(f"error: {err}\nThe run itself is complete: {done}. Run the same command again to retry the push.",
              file=sys.stderr)
        raise SystemExit(1) from None


def _published_run(output: str, run_id: str) -> dict | None:
    """The metrics record of `run_id` if the store's current revision of `output` is that run's publication."""
    local = store.LocalStore()
    if not local.exists(output):
        return None
    try:
        revision = local.head(output)
        run = local.read_metrics(output, revision)
        if not isinstance(run, dict) or run.get("run_id") != run_id:
            return None
        return {**results.validate(run), "revision": revision}
    except (store.StoreError, OSError, ValueError):  # ValueError: unreadable JSON or a record off the schema
        return None


def tokenize_pairs(tokenizer, rows, max_source_length: int, max_target_length: int):
    """A datasets.Dataset of instruction prompts -> reference summaries, unpadded (the collator pads per batch)."""
    import datasets

    sources = tokenizer([prompts.zero_shot(r["dialogue"]) for r in rows], truncation=True,
                        max_length=max_source_length)
    targets = tokenizer([r["summary"] for r in rows], truncation=True, max_length=max_target_length)
    return datasets.Dataset.from_dict({
        "input_ids": sources["input_ids"],
        "attention_mask": sources["attention_mask"],
        "labels": targets["input_ids"],
        "length": [len(x) for x in sources["input_ids"]],
    })


def log_history_rows(log_history: list[dict]) -> list[dict]:
    """Trainer log entries that carry a training loss, as plain rows for results/logs/<run>.jsonl: every number in
    them (step, epoch, loss, learning rate, gradient norm, and what a trl trainer adds, e.g. rewards/margins)."""
    return [{k: v for k, v in e.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for e in log_history if "loss" in e]


# ------------------------------------------------------------------------------------------------ HF-Trainer recipes


def trainer_arguments(config, ckpt: Path, run_id: str = "", *, args_class=None, **recipe):
    """The TrainingArguments of a recipe trained by transformers' Trainer or a trl trainer (`args_class`, default
    Seq2SeqTrainingArguments) from its options.TrainerOptions, plus the recipe's own `recipe` keys. The progress bar
    is on explicitly: left unset, transformers hides it whenever its logging is quieter than WARNING, which
    modeling.quiet_transformers() makes it. Under torchrun / accelerate launch the process group is already joined."""
    from trainers import tracking

    if args_class is None:
        from transformers import Seq2SeqTrainingArguments as args_class
    return args_class(
        output_dir=str(ckpt), max_steps=config.max_steps if config.max_steps > 0 else -1,
        per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio, bf16=use_bf16(config.precision), use_cpu=not torch.cuda.is_available(),
        logging_steps=config.logging_steps, save_steps=config.save_steps, save_total_limit=2, seed=config.seed,
        **tracking.trainer_arguments(getattr(config, "report_to", "none"), run_id), disable_tqdm=False,
        dataloader_num_workers=0, **recipe)


def fit(trainer, ckpt: Path, method: str, run_id: str) -> str | None:
    """Train, resuming from the newest complete checkpoint in `ckpt`, with live progress for the Train tab and a
    clean stop on SIGTERM (trainers.callbacks: a checkpoint is written and the process exits with the stop code; a
    partial model is neither evaluated nor published). On a CPU it trains with workbench.dropout's cheap masks.
    Returns the checkpoint resumed from. Under torchrun every process is still in the process group afterwards, so
    that a collective evaluation (e.g. Trainer.evaluate) can follow; then `leave(trainer)`."""
    from trainers.callbacks import ProgressCallback, progress_path, stop_exit

    progress = ProgressCallback(progress_path(ckpt))
    trainer.add_callback(progress)
    last = last_checkpoint(ckpt)
    if last and is_main_process():
        print(f"[{method}] resuming from {last} (run {run_id})")
    with dropout.cpu_dropout(trainer.model):  # torch's CPU dropout masks cost a quarter of a demo step
        trainer.train(resume_from_checkpoint=last)
    if progress.stopped:
        leave(trainer)
        raise SystemExit(stop_exit(trainer.state.global_step, ckpt))
    return last


def leave(trainer) -> bool:
    """Training and its collectives are over: every process lets go of the data-parallel wrapper and leaves the
    process group (end_distributed). Returns whether this is the main process, the one that goes on to save,
    evaluate and publish once; the others are done."""
    main_process = trainer.is_world_process_zero()
    trainer.model_wrapped = trainer.model  # the data-parallel wrapper goes with the process group (end_distributed)
    end_distributed(trainer.accelerator)
    return main_process


def save_final(model, tokenizer, ckpt: Path, dtype: str, base_ref: str | None = None) -> Path:
    """The trained model as it is published, in `ckpt`/final (store_weights), with its tokenizer."""
    final = ckpt / "final"
    store_weights(model, final, dtype, base_ref=base_ref)
    tokenizer.save_pretrained(final)
    return final


def training_record(config, trainer, method: str, *, watch: Stopwatch, run_id: str, resumed_from: str | None,
                    **recipe) -> dict:
    """The "training" part of an HF-Trainer run's record: what every such recipe records, then the recipe's own
    `recipe` keys. Writes the loss log it names (results/logs/<run_id>.jsonl)."""
    history = trainer.state.log_history
    atomic_write_jsonl(paths.RESULTS_DIR / "logs" / f"{run_id}.jsonl", log_history_rows(history))
    return {"method": method, "steps": trainer.state.global_step, "batch_size": config.batch_size,
            "learning_rate": config.learning_rate, "seed": config.seed, **recipe, **recipe_record(config),
            "final_loss": next((e["loss"] for e in reversed(history) if "loss" in e), None),
            "train_seconds": round(watch.seconds, 1), "log_file": f"logs/{run_id}.jsonl",
            "resumed_from": Path(resumed_from).name if resumed_from else None}


@contextlib.contextmanager
def adapters_in(model, dtype: str):
    """Within the block the model's LoRA weights are in `dtype` (for saving them); after it they are back in fp32
    but rounded to `dtype`, so that the evaluation that follows scores exactly the published adapter (peft loads a
    bf16 adapter back into fp32). The frozen base is left untouched."""
    target = modeling.resolve_dtype(dtype)
    weights = [p for name, p in model.named_parameters() if "lora_" in name]
    for p in weights:
        p.data = p.data.to(target)
    try:
        yield model
    finally:
        for p in weights:
            p.data = p.data.to(torch.float32)


def store_weights(model, folder: Path, dtype: str, base_ref: str | None = None) -> None:
    """Save weights as safetensors in `dtype` (bf16 halves the demo family's size), the in-memory copy rounded the
    same way, so evaluation sees exactly what is published: a full model whole, an adapter its LoRA weights only."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        with adapters_in(model, dtype):
            # the trainers never resize the vocabulary: peft's "auto" would also store the whole (fp32) output head
            # in an adapter that targets lm_head, or ask the Hub about the base's config
            model.save_pretrained(folder, safe_serialization=True, save_embedding_layers=False)
        if base_ref:  # name the base by its store/Hub id, not by the local folder it was loaded from
            import json

            from workbench.io import atomic_write_json

            config_path = folder / "adapter_config.json"
            adapter_config = json.loads(config_path.read_text())
            adapter_config["base_model_name_or_path"] = base_ref
            atomic_write_json(config_path, adapter_config)
        modeling.save_adapter_min_new_tokens(model, model.active_adapter, folder)
        return
    model.to(modeling.resolve_dtype(dtype)).save_pretrained(folder, safe_serialization=True)
    model.to(torch.float32)


class Stopwatch:
    def __init__(self):
        self.started_at = results.utc_now()
        self.clock = time.time()

    @property
    def seconds(self) -> float:
        return time.time() - self.clock

    def run_info(self, **fields):
        """The evaluation's description of this run (workbench.evaluation.RunInfo), timed from this stopwatch."""
        from workbench.evaluation import RunInfo

        return RunInfo(started_at=self.started_at, started_clock=self.clock, **fields)
