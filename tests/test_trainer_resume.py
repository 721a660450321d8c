"""Resuming is exact and safe: a LoRA run interrupted after step 2 and resumed to step 4 gives adapter tensors
bitwise equal to an uninterrupted 4-step run (CPU), and a checkpoint folder is never resumed with other settings."""

from __future__ import annotations

import pytest
import transformers
from safetensors.torch import load_file

from tests.conftest import rows, write_rows
from trainers import lora
from workbench.store import LocalStore


@pytest.fixture
def setup(tiny_model_dir, tmp_store, tmp_path):
    LocalStore().publish(tiny_model_dir, "test/tiny-base")
    return write_rows(tmp_path / "data", rows(8)), tmp_path


def argv(folder, tmp_path, name: str, **extra) -> list[str]:
    options = {"model": "test/tiny-base", "dataset": str(folder), "output": f"test/{name}", "max-steps": 4,
               "save-steps": 2, "batch-size": 4, "learning-rate": 1e-2, "logging-steps": 1, "precision": "fp32",
               "max-new-tokens": 4, "eval-limit": 1, "warmup-ratio": 0.0,
               "checkpoint-dir": str(tmp_path / "runs" / name), **extra}
    return [x for key, value in options.items() for x in (f"--{key}", str(value))]


def interrupt_after(monkeypatch, steps: int) -> None:
    """The next training run dies at the start of optimizer step `steps + 1` (KeyboardInterrupt, as Ctrl-C)."""
    original = transformers.Trainer.training_step
    calls = {"n": 0}

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == steps + 1:
            raise KeyboardInterrupt("simulated kill")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", dies)


@pytest.mark.parametrize("batch_size", [4, 3], ids=["at-epoch-end", "mid-epoch"])
def test_lora_resumed_after_step_2_equals_the_uninterrupted_run_bitwise(setup, monkeypatch, batch_size):
    folder, tmp_path = setup
    straight = lora.main(argv(folder, tmp_path, "straight", **{"batch-size": batch_size}))
    interrupted = argv(folder, tmp_path, "resumed", **{"batch-size": batch_size})
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            lora.main(interrupted)
    assert sorted(p.name for p in (tmp_path / "runs" / "resumed").glob("checkpoint-*")) == ["checkpoint-2"]
    resumed = lora.main(interrupted)
    assert resumed["training"]["resumed_from"] == "checkpoint-2" and resumed["training"]["steps"] == 4
    a = load_file(tmp_path / "runs" / "straight" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "runs" / "resumed" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert different == [], f"{len(different)} of {len(a)} adapter tensors differ after resuming"
    assert [r["loss"] for r in _log(straight)] == [r["loss"] for r in _log(resumed)]


def _log(run) -> list[dict]:
    import json

    from workbench import paths

    return [json.loads(x) for x in (paths.RESULTS_DIR / run["training"]["log_file"]).read_text().splitlines()]


# ------------------------------------------------------------------------------------------------ other settings


def test_guard_resume_writes_then_compares_and_names_each_difference(tmp_path):
    from trainers import common
    from trainers.options import ConfigError

    settings = {"model": "a/b", "learning_rate": 0.01, "target_modules": ("q", "v")}
    common.guard_resume(tmp_path, settings, fresh=False)
    assert (tmp_path / "settings.json").is_file()
    common.guard_resume(tmp_path, dict(settings), fresh=False)  # the same settings (tuple or list alike): resumes
    with pytest.raises(ConfigError) as err:
        common.guard_resume(tmp_path, {**settings, "learning_rate": 1e-4, "seed": 3, "model": "a/b"}, fresh=False)
    message = str(err.value)
    assert "learning_rate: 0.01 -> 0.0001" in message and "seed: (unset) -> 3" in message and "model" not in message
    assert "--fresh" in message and "same settings" in message and "\n" not in message
    common.guard_resume(tmp_path, {"model": "c/d"}, fresh=True)  # --fresh: the new settings replace the old
    common.guard_resume(tmp_path, {"model": "c/d"}, fresh=False)


def test_a_rerun_with_other_settings_is_refused_before_any_model_loads(setup, monkeypatch, capsys):
    from trainers import common
    from workbench import modeling

    folder, tmp_path = setup
    other_data = write_rows(tmp_path / "other-data", rows(8)[::-1][:6])
    first = argv(folder, tmp_path, "guarded")
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            lora.main(first)
    changed = argv(other_data, tmp_path, "guarded", **{"learning-rate": 1e-4})
    with monkeypatch.context() as patch:
        patch.setattr(modeling, "load_model", lambda *a, **k: pytest.fail("a model loaded before the refusal"))
        capsys.readouterr()
        assert common.cli(lora.main, changed) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message
    assert "learning_rate: 0.01 -> 0.0001" in message and f"dataset: \"{folder}\" -> \"{other_data}\"" in message
    assert "train_data" in message and "--fresh" in message and "max_new_tokens" not in message
    assert not LocalStore().exists("test/guarded")
    # the same settings resume (options that only shape evaluation may differ), and the record says what ran
    run = lora.main(argv(folder, tmp_path, "guarded", **{"max-new-tokens": 3}))
    assert run["training"]["resumed_from"] == "checkpoint-2" and run["training"]["learning_rate"] == 0.01
    assert run["training"]["dataset"] == str(folder)
    # --fresh discards the unfinished run; a finished one starts afresh without it
    again = lora.main([*changed, "--fresh"])
    assert again["training"]["resumed_from"] is None and again["training"]["learning_rate"] == 1e-4
    assert again["training"]["dataset"] == str(other_data) and again["training"]["n"] == 6


def test_pretraining_refuses_a_checkpoint_folder_made_with_another_vocabulary(setup, monkeypatch, capsys):
    from trainers import common, pretrain

    folder, tmp_path = setup
    options = ["--dataset", str(folder), "--output", "test/base", "--max-steps", "2", "--batch-size", "2",
               "--vocab-size", "300", "--extra-dialogues", "0", "--checkpoint-dir", str(tmp_path / "runs" / "base")]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 0)
        with pytest.raises(KeyboardInterrupt):
            pretrain.main(options)
    assert (tmp_path / "runs" / "base" / "tokenizer" / "tokenizer.json").is_file()  # what a resumed run would reuse
    capsys.readouterr()
    assert common.cli(pretrain.main, [*options, "--vocab-size", "320"]) == 2
    message = capsys.readouterr().err
    assert "vocab_size: 300 -> 320" in message and "--fresh" in message


def test_pretraining_with_the_copy_phases_records_the_copy_finish(setup, tmp_path, monkeypatch):
    """The copy prior (two tokens of context), the warm-up on dialogue windows and the copy finish after the dialogue
    objectives run in one pretraining command, and its record says how well the finished base copied. The base
    carries its minimum summary length, and a full fine-tune from it keeps it."""
    from trainers import common, full, pretrain
    from workbench import generation, modeling, store

    folder, tmp_path = setup
    run = pretrain.main(["--dataset", str(folder), "--output", "test/copy-base", "--max-steps", "2", "--batch-size",
                         "2", "--vocab-size", "300", "--extra-dialogues", "0", "--eval-limit", "1",
                         "--max-new-tokens", "3", "--copy-prior", "10", "--copy-context", "2",
                         "--copy-warmup-steps", "2", "--copy-warmup-source", "dialogues", "--copy-finish-steps", "2",
                         "--min-new-tokens", "3", "--checkpoint-dir", str(tmp_path / "runs" / "copy-base")])
    copy = run["training"]["copy"]
    assert copy["prior"] == 10 and copy["context"] == 2 and copy["warmup_source"] == "dialogues"
    assert copy["finish_steps"] == 2 and copy["substitute"] == 0.3 and 0 <= copy["finish_accuracy"] <= 1
    assert LocalStore().exists("test/copy-base")
    assert run["training"]["min_new_tokens"] == 3 and run["generation"]["model_min_new_tokens"] == 3
    assert generation.model_min_new_tokens(modeling.load_model(store.resolve("test/copy-base"))) == 3
    monkeypatch.setattr(common, "RUNS_DIR", tmp_path / "runs")
    tuned = full.main(["--model", "test/copy-base", "--dataset", str(folder), "--max-steps", "1", "--batch-size", "2",
                       "--precision", "fp32", "--max-new-tokens", "4", "--eval-limit", "1", "--output", "test/floor"])
    assert tuned["generation"]["model_min_new_tokens"] == 3
    assert generation.model_min_new_tokens(modeling.load_model(store.resolve("test/floor"))) == 3
    lower = full.main(["--model", "test/copy-base", "--dataset", str(folder), "--max-steps", "1", "--batch-size", "2",
                       "--precision", "fp32", "--max-new-tokens", "4", "--eval-limit", "1", "--min-new-tokens", "0",
                       "--output", "test/no-floor"])  # a user's own summaries may be shorter
    assert "model_min_new_tokens" not in lower["generation"] and lower["training"]["min_new_tokens"] == 0
    assert generation.model_min_new_tokens(modeling.load_model(store.resolve("test/no-floor"))) == 0
    # a LoRA adapter keeps a minimum of its own in its folder, beside the base's; without one it writes as its base
    from trainers import lora

    lora_args = ["--model", "test/copy-base", "--dataset", str(folder), "--max-steps", "1", "--batch-size", "2",
                 "--precision", "fp32", "--max-new-tokens", "6", "--eval-limit", "1"]
    own = lora.main([*lora_args, "--min-new-tokens", "5", "--output", "test/lora-floor"])
    assert own["generation"]["model_min_new_tokens"] == 5 and own["training"]["min_new_tokens"] == 5
    assert modeling.read_adapter_min_new_tokens(store.resolve("test/lora-floor")) == 5
    inherits = lora.main([*lora_args, "--output", "test/lora-inherits"])
    assert inherits["generation"]["model_min_new_tokens"] == 3 and "min_new_tokens" not in inherits["training"]
    assert modeling.read_adapter_min_new_tokens(store.resolve("test/lora-inherits")) is None
