"""GPU smoke set (skipped without CUDA): one short step of every trainer, one evaluation and one Compare, all on
`cuda`, in one process each as a user runs them. Each step checks that the work ran on the GPU (CUDA memory was
allocated while it ran) and that it produced its record or its summaries.

    .venv/bin/python -m pytest -q tests/test_gpu.py
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import publish_tiny_lora, rows, write_rows
from workbench import corpus, paths, prompts, results, store
from workbench.generation import GenerationSettings
from workbench.io import atomic_write_jsonl

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHORT = ["--max-new-tokens", "6"]


@pytest.fixture
def family(tiny_model_dir, tmp_store, tmp_path, monkeypatch):
    """The tiny base and LoRA adapter in the test's store, a tiny dataset and checkpoints under tmp_path."""
    from trainers import common

    publish_tiny_lora(tiny_model_dir, tmp_path, sharpen=6.0)
    monkeypatch.setattr(common, "RUNS_DIR", tmp_path / "runs")
    return write_rows(tmp_path / "data", rows(8))


def on_gpu(run):
    """Run `run()` and check that it allocated CUDA memory (it computed on the GPU, not silently on the CPU)."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.max_memory_allocated()
    out = run()
    assert torch.cuda.max_memory_allocated() > before, "nothing was allocated on the GPU"
    return out


def test_device_is_cuda():
    from trainers import common

    assert common.device().type == "cuda"


def test_pretrain_one_step(family):
    from trainers import pretrain

    run = on_gpu(lambda: pretrain.main(["--dataset", str(family), "--output", "test/gpu-base", "--max-steps", "1",
                                        "--batch-size", "4", "--vocab-size", "300", "--extra-dialogues", "0",
                                        "--eval-limit", "2", "--logging-steps", "1"]))
    assert run["training"]["steps"] == 1 and store.LocalStore().exists("test/gpu-base")


@pytest.mark.parametrize("method", ["full", "lora"])
def test_sft_one_step(family, method):
    import importlib

    trainer = importlib.import_module(f"trainers.{method}")
    run = on_gpu(lambda: trainer.main(["--model", "test/tiny-base", "--dataset", str(family), "--output",
                                       f"test/gpu-{method}", "--max-steps", "1", "--batch-size", "4",
                                       "--logging-steps", "1", "--eval-limit", "2", *SHORT]))
    assert run["training"]["steps"] == 1 and run["dataset"]["n"] == 2
    assert results.read(paths.RESULTS_DIR / f"{run['run_id']}.json")["revision"] == run["revision"]


def test_reward_one_step(family, tmp_path):
    from trainers import reward

    atomic_write_jsonl(tmp_path / "pairs.jsonl", corpus.preference_pairs(40, seed=3))
    on_gpu(lambda: reward.main(["--pairs", str(tmp_path / "pairs.jsonl"), "--tokenizer", "test/tiny-base",
                                "--output", "test/gpu-reward", "--hidden-size", "32", "--layers", "1",
                                "--max-steps", "1", "--batch-size", "8"]))
    assert (store.resolve("test/gpu-reward") / "model.safetensors").exists()


def test_ppo_one_step(family):
    from trainers import ppo

    run = on_gpu(lambda: ppo.main(["--policy", "test/tiny-lora", "--dataset", str(family), "--steps", "1",
                                   "--batch-size", "4", "--mini-batch-size", "2", "--ppo-epochs", "1",
                                   "--eval-limit", "2", "--output", "test/gpu-ppo", *SHORT]))
    log = [json.loads(x) for x in (paths.RESULTS_DIR / run["training"]["log_file"]).read_text().splitlines()]
    assert [r["step"] for r in log] == [1] and store.LocalStore().exists("test/gpu-ppo")


def test_evaluation(family):
    from trainers import evaluate

    run = on_gpu(lambda: evaluate.main(["--model", "test/tiny-lora", "--dataset", str(family), "--limit", "2",
                                        *SHORT]))
    assert run["dataset"]["n"] == 2 and run["params"]["trainable"] > 0


def test_compare_serves_every_slot_on_cuda(family, tmp_path):
    from workbench.modelset import ModelSet, ModelSetConfig

    config = tmp_path / "models.yaml"
    config.write_text("base: {ref: test/tiny-base}\nfull: {ref: test/tiny-base}\nlora: {ref: test/tiny-lora}\n"
                      "ppo: {ref: test/tiny-lora}\ntoxicity: profanity-check\ndtype: auto\n")
    models = ModelSet(ModelSetConfig.load(config), device="cuda")
    assert models.device.type == "cuda" and all(models.status[s].ok for s in ("base", "full", "lora", "ppo"))
    assert all(p.device.type == "cuda" for engine in models.engines for p in engine.model.parameters())
    prompt = prompts.zero_shot(rows(1)[0]["dialogue"])
    out = on_gpu(lambda: models.summarize({s: prompt for s in ("base", "full", "lora", "ppo")},
                                          GenerationSettings(max_new_tokens=6)))
    assert all(summary.error is None and isinstance(summary.text, str) for summary in out.values())
