"""Stop and resume as the Train tab does it: SIGTERM during a recipe's training writes a checkpoint at the end of the
current step and leaves with exit code 75 without evaluating or publishing; the same command then resumes from that
checkpoint and finishes. The live progress file grows while the run trains."""

from __future__ import annotations

import os
import signal

import pytest
import transformers

from tests.conftest import rows, write_rows
from tests.test_trainer_resume import argv
from trainers import lora
from trainers.callbacks import STOPPED_EXIT_CODE, progress_path, read_progress
from workbench.store import LocalStore


def test_sigterm_checkpoints_stops_without_publishing_and_the_same_command_resumes(tiny_model_dir, tmp_store,
                                                                                   tmp_path, monkeypatch):
    LocalStore().publish(tiny_model_dir, "test/tiny-base")
    folder = write_rows(tmp_path / "data", rows(8))
    command = argv(folder, tmp_path, "stopped", **{"max-steps": 4, "save-steps": 100})
    original = transformers.Trainer.training_step
    calls = {"n": 0}

    def signalled(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what the Train tab's Stop sends
        return original(self, *args, **kwargs)

    before = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        patch.setattr(transformers.Trainer, "training_step", signalled)
        with pytest.raises(SystemExit) as stopped:
            lora.main(command)
    assert stopped.value.code == STOPPED_EXIT_CODE
    ckpt = tmp_path / "runs" / "stopped"
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == ["checkpoint-2"]  # saved on request, not on schedule
    assert not LocalStore().exists("test/stopped")  # a partial model is not published
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the caller's again once training ends
    logged = [r for r in read_progress(progress_path(ckpt)) if r.get("event") == "log"]
    assert [r["step"] for r in logged] == [1, 2] and all(r["max_steps"] == 4 for r in logged)

    finished = lora.main(command)
    assert finished["training"]["resumed_from"] == "checkpoint-2" and finished["training"]["steps"] == 4
    assert LocalStore().exists("test/stopped")
    assert [r["step"] for r in read_progress(progress_path(ckpt)) if r.get("event") == "log"] == [1, 2, 3, 4]


def test_the_reward_model_stops_and_resumes_as_the_other_recipes_do(tiny_model_dir, tmp_store, tmp_path,
                                                                     monkeypatch):
    """The reward recipe trains through common.fit like the others: before, a Train-tab run of it wrote no progress
    and a Stop ended it without a checkpoint of that moment."""
    from trainers import reward
    from workbench import corpus
    from workbench.io import atomic_write_jsonl

    LocalStore().publish(tiny_model_dir, "test/tiny-base")
    atomic_write_jsonl(tmp_path / "pairs.jsonl", corpus.preference_pairs(40, seed=3))
    ckpt = tmp_path / "runs" / "reward"
    command = ["--pairs", str(tmp_path / "pairs.jsonl"), "--tokenizer", "test/tiny-base", "--output", "test/reward",
               "--hidden-size", "32", "--layers", "1", "--max-steps", "4", "--batch-size", "4",
               "--checkpoint-dir", str(ckpt)]
    original = transformers.Trainer.training_step
    calls = {"n": 0}

    def signalled(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(transformers.Trainer, "training_step", signalled)
        with pytest.raises(SystemExit) as stopped:
            reward.main(command)
    assert stopped.value.code == STOPPED_EXIT_CODE
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not LocalStore().exists("test/reward")
    end = read_progress(progress_path(ckpt))[-1]
    assert end["event"] == "end" and end["stopped"] is True and end["step"] == 2 and end["max_steps"] == 4

    finished = reward.main(command)
    assert finished["training"]["steps"] == 4 and LocalStore().exists("test/reward")
    assert read_progress(progress_path(ckpt))[-1] | {"elapsed_s": 0, "time": 0} == {
        "event": "end", "step": 4, "max_steps": 4, "stopped": False, "elapsed_s": 0, "time": 0}
