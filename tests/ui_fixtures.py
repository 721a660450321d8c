"""Shared helpers for the app tests: a tiny model family in a temporary store, a tiny dataset, seeded results, and a
launched app.

The family: a tiny random T5 base, a separately initialised "full fine-tune", and two LoRA adapters with different
non-zero weights (so that adapter cross-talk would change the outputs). Everything is built in a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_ARCH, rows
from workbench import paths

DIALOGUES_EXTRA = [
    "#Person1#: Where is the station?\n#Person2#: Two blocks down, next to the bank.",
    "#Person1#: Can I pay by card?\n#Person2#: Yes, we take every card.\n#Person1#: Great, thanks.",
    "#Person1#: The meeting moved to Thursday.\n#Person2#: Then I will send the slides on Wednesday.",
    "#Person1#: Did you feed the cat?\n#Person2#: No, I thought you did!",
    "#Person1#: How much is the blue shirt?\n#Person2#: Twenty dollars, and the red one is fifteen.",
    "#Person1#: I lost my keys again.\n#Person2#: Check the kitchen drawer, they are always there.",
]
REPOS = {"base": "test/tiny-base", "full": "test/tiny-full", "lora": "test/tiny-lora", "ppo": "test/tiny-ppo"}


def build_family(root: Path, tokenizer, base_dir: Path) -> Path:
    """Publish base/full/lora/ppo into a LocalStore at root/store; returns the store folder."""
    from peft import LoraConfig, get_peft_model

    from workbench import modeling
    from workbench.store import LocalStore

    store_dir = root / "store"
    local = LocalStore(store_dir)
    local.publish(base_dir, REPOS["base"])

    full = modeling.build_model(modeling.demo_config(len(tokenizer), **TINY_ARCH), seed=1)
    full_dir = root / "build" / "full"
    full.save_pretrained(full_dir, safe_serialization=True)
    tokenizer.save_pretrained(full_dir)
    local.publish(full_dir, REPOS["full"])

    for i, slot in enumerate(("lora", "ppo")):
        base = modeling.load_model(base_dir, dtype="fp32", device="cpu")
        torch.manual_seed(100 + i)
        config = LoraConfig(r=4, lora_alpha=32, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM",
                            init_lora_weights=False)
        model = get_peft_model(base, config)
        with torch.no_grad():  # make the adapters clearly different from the base and from each other
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.mul_(3.0)
        folder = root / "build" / slot
        model.save_pretrained(folder, safe_serialization=True)
        cfg = json.loads((folder / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = REPOS["base"]
        (folder / "adapter_config.json").write_text(json.dumps(cfg))
        local.publish(folder, REPOS[slot])
    return store_dir


def write_config(path: Path, **overrides) -> Path:
    slots = {**{s: {"ref": r} for s, r in REPOS.items()}, **overrides}
    lines = [f"{slot}: {json.dumps(spec)}" for slot, spec in slots.items()]
    lines += ["toxicity: profanity-check", "dtype: fp32"]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_dataset(folder: Path) -> Path:
    """A tiny demo-format corpus: train/validation/test jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    base_rows = rows(4)
    extra = [{"fname": f"x{i}", "dialogue": d, "summary": d.split("\n")[0].replace("#Person1#: ", "Someone asks: "),
              "references": [], "topic": "misc"} for i, d in enumerate(DIALOGUES_EXTRA)]
    all_rows = base_rows + extra
    splits = {"train": all_rows[:6], "validation": all_rows[6:8], "test": all_rows}
    for split, part in splits.items():
        with open(folder / f"{split}.jsonl", "w") as handle:
            for i, r in enumerate(part):
                handle.write(json.dumps({"fname": f"{split}_{i}", "dialogue": r["dialogue"], "summary": r["summary"],
                                         "topic": r["topic"]}) + "\n")
    return folder


def seed_results(results_dir: Path) -> Path:
    """Two valid measured runs (base and LoRA) plus a PPO run with a training log, written with results.write_metrics."""
    from workbench import results

    results_dir.mkdir(parents=True, exist_ok=True)

    def ci(mean, n=12):
        return {"mean": mean, "std": 0.05, "n": n, "ci_low": mean - 0.03, "ci_high": mean + 0.03}

    def run(run_id, method, model_id, r1, tox, trainable, extra=None, log=None):
        metrics = {"rouge1": ci(r1), "rouge2": ci(r1 / 3), "rougeL": ci(r1 * 0.8), "rougeLsum": ci(r1 * 0.8),
                   "toxicity": ci(tox), **(extra or {})}
        return {"schema_version": results.SCHEMA_VERSION, "run_id": run_id, "model_id": model_id,
                "revision": "abc123def456", "method": method, "base_model": "test/tiny-base",
                "params": {"total": 1_000_000, "trainable": trainable, "trainable_share": trainable / 1_000_000},
                "dataset": {"id": "demo", "split": "test", "n": 12}, "metrics": metrics,
                "generation": {"max_new_tokens": 64, "num_beams": 1}, "training": {"log_file": log} if log else None,
                "git_commit": "0123456789abcdef", "started_at": "2025-01-01T00:00:00Z",
                "finished_at": f"2025-01-01T00:0{len(run_id) % 10}:00Z", "wall_time_s": 1.0,
                "outputs_file": f"outputs/{run_id}.jsonl"}

    (results_dir / "logs").mkdir(exist_ok=True)
    with open(results_dir / "logs" / "ppo-test.jsonl", "w") as handle:
        for step in range(1, 11):
            handle.write(json.dumps({"step": step, "reward_mean": step * 0.1, "kl": step * 0.01,
                                     "toxicity_mean": 0.3 - step * 0.01}) + "\n")
    with open(results_dir / "logs" / "lora-test.jsonl", "w") as handle:
        for step in range(10, 101, 10):
            handle.write(json.dumps({"step": step, "loss": 3.0 / (step / 10)}) + "\n")
    runs = [
        run("base-test", "base", "test/tiny-base", 0.20, 0.12, 1_000_000),
        run("full-test", "full", "test/tiny-full", 0.40, 0.10, 1_000_000),
        run("lora-test", "lora", "test/tiny-lora", 0.37, 0.11, 8_000, log="logs/lora-test.jsonl"),
        run("ppo-test", "ppo", "test/tiny-ppo", 0.36, 0.07, 8_000, log="logs/ppo-test.jsonl",
            extra={"toxicity_start": ci(0.11), "toxicity_diff_vs_start": ci(-0.04)}),
    ]
    for r in runs:
        results.write_metrics(r, results_dir / f"{r['run_id']}.json")
    return results_dir


class Workbench:
    """A tiny family, its config, a loaded ModelSet and a WorkbenchService, in a temporary folder."""

    def __init__(self, root: Path, tokenizer, base_dir: Path, monkeypatch, *, config_overrides=None,
                 with_results: bool = True):
        from workbench.app_service import WorkbenchService
        from workbench.modelset import ModelSet, ModelSetConfig

        self.root = root
        self.store_dir = build_family(root, tokenizer, base_dir) if not (root / "store").exists() else root / "store"
        monkeypatch.setattr(paths, "STORE_DIR", self.store_dir)
        self.data_dir = write_dataset(root / "data")
        monkeypatch.setattr(paths, "DEMO_DATA_DIR", self.data_dir)
        monkeypatch.setattr(paths, "SHARED_DIALOGSUM", root / "no-dialogsum")
        self.results_dir = seed_results(root / "results") if with_results else root / "empty-results"
        monkeypatch.setattr(paths, "RESULTS_DIR", self.results_dir)
        self.config_path = write_config(root / "models.yaml", **(config_overrides or {}))
        started = time.time()
        self.models = ModelSet(ModelSetConfig.load(self.config_path), device="cpu")
        self.load_seconds = time.time() - started
        self.service = WorkbenchService(self.models, results_dir=self.results_dir)


def handmade_revision(store_dir: Path, repo: str, files: dict[str, bytes | Path]) -> None:
    """A store revision written by hand (not through publish), as a tampered or foreign store would hold it."""
    folder = store_dir / repo / "revisions" / "handmade"
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content.read_bytes() if isinstance(content, Path) else content)
    (store_dir / repo / "refs").mkdir()
    (store_dir / repo / "refs" / "main").write_text("handmade\n")


@contextlib.contextmanager
def launched(service, **build_kwargs):
    """Build and launch the app on a free local port; yields (demo, url); closes it afterwards."""
    from workbench.ui import build_app, launch_kwargs

    demo = build_app(service, **build_kwargs)
    demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", **launch_kwargs())
    try:
        yield demo, demo.local_url
    finally:
        demo.close()


def app_fixtures(name: str, concurrency: int):
    """Module-scoped `wb` (a Workbench on tiny models) and `client` (gradio_client on the launched app) fixtures:
    `wb, client = app_fixtures("wb", concurrency=8)` at a test module's top level."""

    @pytest.fixture(scope="module")
    def wb(tmp_path_factory, tiny_tokenizer, tiny_model_dir):
        patch = pytest.MonkeyPatch()
        yield Workbench(tmp_path_factory.mktemp(name), tiny_tokenizer, tiny_model_dir, patch)
        patch.undo()

    @pytest.fixture(scope="module")
    def client(wb):
        from gradio_client import Client

        with launched(wb.service, concurrency=concurrency) as (_, url):
            yield Client(url, verbose=False)

    return wb, client
