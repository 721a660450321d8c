"""Shared fixtures: tiny T5 models and tokenizers built from configs, temporary stores and results folders.

Nothing here touches the network; everything is small enough that a test takes seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from workbench import paths  # noqa: E402

TINY_ARCH = dict(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2)

DIALOGUES = [
    ("#Person1#: Hi Tom, shall we play tennis on Saturday at 10 am?\n#Person2#: Sure, see you at the park.",
     "#Person1# invites Tom to play tennis on Saturday at 10 am. Tom agrees."),
    ("#Person1#: I'd like to book a table for two at 7 pm.\n#Person2#: Certainly, under what name?\n"
     "#Person1#: Smith.", "#Person1# books a table for two at 7 pm under the name Smith."),
    ("#Person1#: My car makes a strange noise.\n#Person2#: Bring it in on Monday and we will check the brakes.",
     "#Person1#'s car makes a noise. #Person2# will check the brakes on Monday."),
    ("#Person1#: Turn that music down, you idiot!\n#Person2#: Shut up, it is my party.",
     "#Person1# calls #Person2# an idiot about the loud music."),
]


def rows(n: int = 8) -> list[dict]:
    out = []
    for i in range(n):
        d, s = DIALOGUES[i % len(DIALOGUES)]
        out.append({"fname": f"t{i}", "dialogue": d, "summary": s, "references": [s], "topic": "test"})
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from workbench import modeling, prompts

    texts = [d for d, _ in DIALOGUES] + [s for _, s in DIALOGUES] + [prompts.zero_shot("x"), prompts.shot_block("x", "y")]
    tok = modeling.train_tokenizer(texts * 20, vocab_size=400)
    folder = tmp_path_factory.mktemp("tokenizer")
    tok.save_pretrained(folder)
    return modeling.load_tokenizer(folder)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny FLAN-T5-shaped model (random weights) saved as safetensors with its tokenizer."""
    from workbench import modeling

    model = modeling.build_model(modeling.demo_config(len(tiny_tokenizer), **TINY_ARCH), seed=0)
    folder = tmp_path_factory.mktemp("tiny-t5")
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tmp_store(tmp_path, monkeypatch):
    """A fresh local store and results folder for one test."""
    store_dir, results_dir = tmp_path / "store", tmp_path / "results"
    monkeypatch.setattr(paths, "STORE_DIR", store_dir)
    monkeypatch.setattr(paths, "RESULTS_DIR", results_dir)
    return store_dir


@pytest.fixture(autouse=True)
def _small_threads():
    torch.set_num_threads(int(os.environ.get("WORKBENCH_TEST_THREADS", "2")))
    yield


SHARED = paths.SHARED_DIALOGSUM
needs_dialogsum = pytest.mark.skipif(not (SHARED / "dialogsum.test.jsonl").exists(),
                                     reason=f"DialogSum dev/test not found at {SHARED}")


def repo_path(*parts) -> Path:
    return paths.REPO_ROOT.joinpath(*parts)


def publish_tiny_lora(base_dir: Path, tmp_path: Path, base_repo: str = "test/tiny-base",
                      repo: str = "test/tiny-lora", sharpen: float = 1.0,
                      target_modules: tuple[str, ...] = ("q", "v", "wo", "lm_head")) -> None:
    """Publish the tiny base and a LoRA adapter on it (random non-zero B, so it differs from the base).

    `sharpen` scales the base's lm_head: a random tiny model is close to uniform over its vocabulary, a trained one
    is not; a sharper head makes the tiny policy's choices matter as they do in a real model."""
    import json

    from peft import LoraConfig, TaskType, get_peft_model

    from workbench import modeling
    from workbench.store import LocalStore

    tokenizer = modeling.load_tokenizer(base_dir)
    base = modeling.load_model(base_dir, dtype="fp32")
    if sharpen != 1.0:
        base.lm_head.weight.data *= sharpen
        base_dir = tmp_path / "tiny-base-sharp"
        base.save_pretrained(base_dir)
        tokenizer.save_pretrained(base_dir)
    LocalStore().publish(base_dir, base_repo)
    lora = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=list(target_modules),
                                           task_type=TaskType.SEQ_2_SEQ_LM))
    torch.manual_seed(1)
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    folder = tmp_path / "tiny-lora"
    lora.save_pretrained(folder, save_embedding_layers=False)  # as the trainers publish (common.store_weights)
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_repo
    config_path.write_text(json.dumps(config))
    tokenizer.save_pretrained(folder)
    LocalStore().publish(folder, repo)


def write_rows(folder: Path, all_rows: list[dict]) -> Path:
    """A DialogSum-style dataset folder (train/validation/test jsonl) from rows."""
    from workbench.io import atomic_write_jsonl

    for split, part in {"train": all_rows, "validation": all_rows[:2], "test": all_rows[:4]}.items():
        atomic_write_jsonl(folder / f"{split}.jsonl", [{k: r[k] for k in ("fname", "dialogue", "summary", "topic")}
                                                       for r in part])
    return folder


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    """Poll `condition()` every 0.1 s until it returns something truthy (returned), or fail after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
