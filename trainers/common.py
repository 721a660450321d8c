"""What every recipe shares: seeding, precision, loading the starting model, tokenising, publishing a run."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from workbench import modeling, prompts, results, store
from workbench.paths import REPO_ROOT

RUNS_DIR = Path(os.environ.get("WORKBENCH_RUNS", REPO_ROOT / "runs"))  # checkpoints; not committed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun / accelerate launch."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed() -> tuple[int, int]:
    """(rank, world size). Under torchrun / accelerate launch (WORLD_SIZE > 1) joins the process group: gloo on
    CPU, nccl on GPU. A plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world


def average_gradients(params) -> None:
    """All-reduce gradients to their mean over the processes (data-parallel training without a wrapper)."""
    world = torch.distributed.get_world_size()
    for p in params:
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= world


def mean_across(values: dict[str, float]) -> dict[str, float]:
    """Average scalar statistics over the processes (identity for a single process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    t /= torch.distributed.get_world_size()
    return dict(zip(keys, t.tolist()))


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


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
    """A completed run (marked by COMPLETED) or `fresh=True` starts over; otherwise checkpoints are kept."""
    if path.exists() and (fresh or (path / "COMPLETED").exists()):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def resolve_model(ref: str, revision: str = "main") -> Path:
    return store.resolve(ref, revision, allow_paths=True)


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
    """Trainer log entries that carry a training loss, as plain rows for results/logs/<run>.jsonl."""
    keep = ("step", "epoch", "loss", "learning_rate", "grad_norm")
    return [{k: e[k] for k in keep if k in e} for e in log_history if "loss" in e]


def store_weights(model, folder: Path, dtype: str, base_ref: str | None = None) -> None:
    """Save weights as safetensors. Full models are stored in `dtype` (bf16 halves the demo family's size) and the
    in-memory copy is rounded the same way, so evaluation sees exactly what is published; adapters are small and
    stay fp32, and the frozen base under them is left untouched."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model.save_pretrained(folder, safe_serialization=True)
        if base_ref:  # name the base by its store/Hub id, not by the local folder it was loaded from
            import json

            from workbench.io import atomic_write_json

            config_path = folder / "adapter_config.json"
            adapter_config = json.loads(config_path.read_text())
            adapter_config["base_model_name_or_path"] = base_ref
            atomic_write_json(config_path, adapter_config)
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
