"""A PPO run killed after step 2 and resumed to step 4 ends bit for bit where an uninterrupted 4-step run ends."""

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import publish_tiny_lora, rows, write_rows
from trainers import ppo as ppo_trainer
from trainers.options import ConfigError
from workbench import store


def adapter_tensors(repo: str) -> dict:
    return load_file(store.resolve(repo) / "adapter_model.safetensors")


def test_resumed_ppo_run_is_bitwise_equal_to_an_uninterrupted_one(tiny_model_dir, tmp_store, tmp_path, monkeypatch):
    publish_tiny_lora(tiny_model_dir, tmp_path, sharpen=6.0)
    data_dir = write_rows(tmp_path / "data", rows(8))
    args = ["--policy", "test/tiny-lora", "--dataset", str(data_dir), "--steps", "4", "--batch-size", "4",
            "--mini-batch-size", "2", "--ppo-epochs", "2", "--max-new-tokens", "8", "--save-steps", "2",
            "--heated-share", "0.25", "--learning-rate", "3e-3", "--eval-limit", "2"]
    straight = ppo_trainer.main([*args, "--output", "test/straight", "--checkpoint-dir", str(tmp_path / "a")])
    assert straight["training"]["resumed_from_step"] is None

    real_step = ppo_trainer.train_step

    def killed_in_step_3(t, step, *rest, **kwargs):
        if step == 2:
            raise KeyboardInterrupt("killed")
        return real_step(t, step, *rest, **kwargs)

    resumed_args = [*args, "--output", "test/resumed", "--checkpoint-dir", str(tmp_path / "b")]
    monkeypatch.setattr(ppo_trainer, "train_step", killed_in_step_3)
    with pytest.raises(KeyboardInterrupt):
        ppo_trainer.main(resumed_args)
    monkeypatch.setattr(ppo_trainer, "train_step", real_step)
    resumed = ppo_trainer.main(resumed_args)
    assert resumed["training"]["resumed_from_step"] == 2

    a, b, start = adapter_tensors("test/straight"), adapter_tensors("test/resumed"), adapter_tensors("test/tiny-lora")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], start[k]) for k in a if k in start)  # it did train
    heads = [torch.load(tmp_path / f / "latest" / "trainer_state.pt", weights_only=True)["value_head"]
             for f in ("a", "b")]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def test_resuming_with_other_training_settings_is_refused(tiny_model_dir, tmp_store, tmp_path, monkeypatch):
    publish_tiny_lora(tiny_model_dir, tmp_path, sharpen=6.0)
    data_dir = write_rows(tmp_path / "data", rows(8))
    args = ["--policy", "test/tiny-lora", "--dataset", str(data_dir), "--steps", "2", "--batch-size", "4",
            "--mini-batch-size", "2", "--ppo-epochs", "1", "--max-new-tokens", "6", "--save-steps", "1",
            "--output", "test/guarded", "--checkpoint-dir", str(tmp_path / "ckpt")]
    real_step = ppo_trainer.train_step

    def killed_in_step_2(t, step, *rest, **kwargs):
        if step == 1:
            raise KeyboardInterrupt("killed")
        return real_step(t, step, *rest, **kwargs)

    monkeypatch.setattr(ppo_trainer, "train_step", killed_in_step_2)
    with pytest.raises(KeyboardInterrupt):
        ppo_trainer.main(args)
    monkeypatch.setattr(ppo_trainer, "train_step", real_step)
    with pytest.raises(ConfigError, match=r"learning_rate: 0\.0001 -> 0\.002.*--fresh"):
        ppo_trainer.main([*args, "--learning-rate", "2e-3"])


def test_sigterm_stops_ppo_after_the_step_with_a_checkpoint_and_the_same_command_finishes(tiny_model_dir, tmp_store,
                                                                                          tmp_path, monkeypatch):
    import os
    import signal

    from trainers.callbacks import STOPPED_EXIT_CODE, progress_path, read_progress

    publish_tiny_lora(tiny_model_dir, tmp_path, sharpen=6.0)
    data_dir = write_rows(tmp_path / "data", rows(8))
    args = ["--policy", "test/tiny-lora", "--dataset", str(data_dir), "--steps", "4", "--batch-size", "4",
            "--mini-batch-size", "2", "--ppo-epochs", "1", "--max-new-tokens", "8", "--save-steps", "100",
            "--eval-limit", "2", "--output", "test/stopped", "--checkpoint-dir", str(tmp_path / "c")]
    real_step = ppo_trainer.train_step

    def signalled_in_step_2(t, step, *rest, **kwargs):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # what the Train tab's Stop sends
        return real_step(t, step, *rest, **kwargs)

    before = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        patch.setattr(ppo_trainer, "train_step", signalled_in_step_2)
        with pytest.raises(SystemExit) as stopped:
            ppo_trainer.main(args)
    assert stopped.value.code == STOPPED_EXIT_CODE and signal.getsignal(signal.SIGTERM) is before
    saved = torch.load(tmp_path / "c" / "latest" / "trainer_state.pt", weights_only=True)
    assert saved["step"] == 2 and not store.LocalStore().exists("test/stopped")  # checkpointed, not published
    logged = [r for r in read_progress(progress_path(tmp_path / "c")) if r.get("event") == "log"]
    assert [r["step"] for r in logged] == [1, 2] and all("kl" in r and r["max_steps"] == 4 for r in logged)
    finished = ppo_trainer.main(args)
    assert finished["training"]["resumed_from_step"] == 2 and store.LocalStore().exists("test/stopped")


def test_saving_checkpoints_and_the_adapter_asks_no_hub(tiny_model_dir, tmp_store, tmp_path, monkeypatch):
    """peft's default `save_embedding_layers="auto"` asks the Hub whether the base's config exists (to see whether the
    vocabulary was resized) whenever the adapter names its base by a store id: offline, a failed network call and two
    warnings at every checkpoint. PPO never resizes the vocabulary and says so."""
    from peft.utils import save_and_load

    asked = []
    monkeypatch.setattr(save_and_load, "check_file_exists_on_hf_hub", lambda *a, **k: asked.append(a))
    publish_tiny_lora(tiny_model_dir, tmp_path, target_modules=("q", "v", "wo"))  # on lm_head peft would not ask
    args = ["--policy", "test/tiny-lora", "--dataset", str(write_rows(tmp_path / "data", rows(8))), "--steps", "2",
            "--batch-size", "4", "--mini-batch-size", "2", "--ppo-epochs", "1", "--max-new-tokens", "6",
            "--save-steps", "1", "--eval-limit", "2", "--output", "test/quiet", "--checkpoint-dir", str(tmp_path / "c")]
    ppo_trainer.main(args)
    assert store.resolve("test/quiet").exists() and asked == []
