"""trainers.reward --preferences: a reward model from a handful of votes saved the way Compare saves them, held out by
whole votes, that `trainers.ppo --reward reward-model:<name>` accepts and runs with."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DIALOGUES, publish_tiny_lora, rows, write_rows
from trainers import ppo as ppo_trainer
from trainers import reward as reward_trainer
from trainers.options import ConfigError
from workbench import preferences, results, rewards, store
from workbench.app_service import CompareResult, SlotOutput
from workbench.votes import Votes

CLEAN = ["{} agrees to meet on Saturday.", "{} books a table for two.", "{} will check the brakes on Monday.",
         "{} asks about the music."]
TOXIC = ["{} is a stupid idiot.", "Shut up, {}, you fool.", "{} is a damn moron.", "Idiot {} hates everyone."]


def save_votes(n: int) -> list[dict]:
    """`n` votes through the app's vote service: a clean summary beats a toxic one and a bland one."""
    book, answers = Votes("test/votes"), []
    for i in range(n):
        name = ["Tom", "Ann", "Bob", "Eve", "Max", "Sue"][i % 6] + str(i)
        texts = {"lora": CLEAN[i % 4].format(name), "ppo": TOXIC[i % 4].format(name), "base": f"{name} talks."}
        models = {s: SlotOutput(slot=s, label=s, model=f"demo/{s}", revision="r1", available=True, text=t)
                  for s, t in texts.items()}
        result = CompareResult(ok=True, message="", prompt=f"Summarize: {DIALOGUES[i % 4][0]}", models=models)
        answers.append(book.save(Votes.comparison(result, DIALOGUES[i % 4][0]), best="lora", unacceptable=["ppo"]))
    assert all(a["ok"] for a in answers)
    return answers


def test_reward_model_from_votes_drives_ppo(tiny_model_dir, tmp_store, tmp_path):
    answers = save_votes(8)
    assert len(preferences.load_pairs("test/votes")) == sum(a["pairs"] for a in answers) == 8 * 3
    publish_tiny_lora(tiny_model_dir, tmp_path)
    record = reward_trainer.main(["--preferences", "test/votes", "--tokenizer", "test/tiny-base",
                                  "--output", "test/votes-reward", "--hidden-size", "32", "--layers", "1",
                                  "--max-steps", "20", "--batch-size", "8", "--learning-rate", "2e-3",
                                  "--held-out", "0.25", "--checkpoint-dir", str(tmp_path / "runs-reward")])
    saved = results.read(tmp_path / "results" / f"{record['run_id']}.json")
    assert saved["method"] == "reward" and saved["dataset"] == {"id": "test/votes", "split": "held_out", "n": 6}
    assert saved["metrics"]["train_pairs"] == {"n": 18, "source": "test/votes"}  # 2 of 8 votes held out, whole
    outcomes = [json.loads(x) for x in (tmp_path / "results" / saved["outputs_file"]).read_text().splitlines()]
    held_votes = {p["vote_id"] for p in preferences.load_pairs("test/votes")
                  if (p["chosen"], p["rejected"]) in {(o["chosen"], o["rejected"]) for o in outcomes}}
    assert len(held_votes) == 2  # every pair of a held-out vote, and no other
    assert "`test/votes`" in (store.resolve("test/votes-reward") / "README.md").read_text()

    score, description = rewards.load_reward("reward-model:test/votes-reward")
    values = score(["Tom agrees to meet on Saturday.", "Tom is a stupid idiot."])
    assert description == "learned reward model test/votes-reward" and len(values) == 2
    assert all(isinstance(v, float) for v in values) and values[0] != values[1]

    metrics = ppo_trainer.main(["--policy", "test/tiny-lora", "--dataset", str(write_rows(tmp_path / "d", rows(8))),
                                "--reward", "reward-model:test/votes-reward", "--steps", "2", "--batch-size", "4",
                                "--mini-batch-size", "2", "--ppo-epochs", "1", "--max-new-tokens", "8",
                                "--output", "test/votes-ppo", "--save-steps", "2", "--eval-limit", "4",
                                "--checkpoint-dir", str(tmp_path / "runs-ppo")])
    assert "learned reward model test/votes-reward" in metrics["training"]["reward"]
    assert results.read(tmp_path / "results" / f"{metrics['run_id']}.json")["method"] == "ppo"
    assert store.resolve("test/votes-ppo").is_dir()


def test_preferences_must_name_a_dataset_with_two_votes(tmp_store, capsys):
    with pytest.raises(SystemExit):
        reward_trainer.main(["--preferences", "test/none"])
    assert "preferences: no preference dataset 'test/none' (in the local store: none yet" in capsys.readouterr().err
    save_votes(1)
    with pytest.raises(ConfigError, match="holds one vote; at least 2"):
        reward_trainer.main(["--preferences", "test/votes", "--tokenizer", "test/tiny-base"])


def test_plain_pairs_split_as_before():
    """--pairs files keep their old split (shuffle, then the first share held out)."""
    import random

    pairs = [{"chosen": f"c{i}", "rejected": f"r{i}"} for i in range(20)]
    shuffled = list(pairs)
    random.Random(3).shuffle(shuffled)
    assert reward_trainer.split_pairs(pairs, 0.2, 3) == (shuffled[4:], shuffled[:4])
