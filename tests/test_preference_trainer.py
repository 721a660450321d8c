"""trainers.preference: ORPO / CPO / SimPO on preference pairs from a LoRA start, evaluated against that start and
published like the other trainers."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tests.conftest import publish_tiny_lora, rows, write_rows
from trainers import common
from trainers import preference as trainer
from trainers.options import ConfigError
from workbench import preferences, results, store

PREFS = "test/prefs"


@pytest.fixture
def setup(tiny_model_dir, tmp_store, tmp_path, monkeypatch):
    """A tiny base + LoRA start in the store, 8 preference pairs (the reference beats an insulting copy), an
    evaluation dataset."""
    assert {"orpo", "cpo"} <= results.METHODS  # the preference runs are schema-checked runs like the others
    publish_tiny_lora(tiny_model_dir, tmp_path)
    for row in rows(8):
        outputs = {"a": ("m/ref", "r1", row["summary"]), "b": ("m/rude", "r2", "You idiot, " + row["summary"])}
        preferences.record_vote(PREFS, dialogue=row["dialogue"], prompt=f"Summarize: {row['dialogue']}",
                                outputs=outputs, best="a", voter="test")
    return write_rows(tmp_path / "data", rows(8))


def argv(data, tmp_path, *extra) -> list[str]:
    return ["--policy", "test/tiny-lora", "--preferences", PREFS, "--dataset", str(data), "--max-steps", "2",
            "--batch-size", "2", "--max-new-tokens", "8", "--eval-batch-size", "8", "--precision", "fp32",
            "--held-out", "0.25", "--logging-steps", "1", "--checkpoint-dir", str(tmp_path / "runs"), *extra]


def test_orpo_trains_the_lora_start_evaluates_against_it_and_publishes(setup, tmp_path):
    metrics = trainer.main(argv(setup, tmp_path, "--output", "test/tiny-orpo"))
    assert metrics["method"] == "orpo" and metrics["dataset"]["n"] == 4
    saved = results.read(tmp_path / "results" / f"{metrics['run_id']}.json")
    m, t = saved["metrics"], saved["training"]
    for key in ("toxicity", "rouge1", "rouge2", "length_words"):
        assert m[f"{key}_start"]["n"] == 4 and m[f"{key}_diff_vs_start"]["n"] == 4
    assert t["steps"] == 2 and t["samples_seen"] == 4 and t["loss"] == "orpo" and t["beta"] == 0.1
    assert t["n_pairs"] == 6 and t["held_out"]["n_pairs"] == 2 and 0 <= t["held_out"]["accuracy"] <= 1
    assert t["policy_start"] == "test/tiny-lora" and t["preferences"] == PREFS
    log = [json.loads(x) for x in (tmp_path / "results" / t["log_file"]).read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all("loss" in r for r in log)

    adapter = store.resolve("test/tiny-orpo")
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "test/tiny-base"
    assert "library_name: peft" in (adapter / "README.md").read_text()
    trained = load_file(adapter / "adapter_model.safetensors")
    start = load_file(store.resolve("test/tiny-lora") / "adapter_model.safetensors")
    assert trained.keys() == start.keys()
    assert any(not trained[k].equal(start[k]) for k in start)  # two optimizer steps moved the adapter


def test_simpo_runs_through_the_cpo_trainer(setup, tmp_path):
    metrics = trainer.main(argv(setup, tmp_path, "--loss", "simpo", "--max-steps", "1", "--held-out", "0",
                                "--output", "test/tiny-simpo"))
    t = metrics["training"]
    assert metrics["method"] == "cpo" and t["loss_type"] == "simpo" and t["cpo_alpha"] == 0.0 and t["beta"] == 2.0
    assert t["held_out"] == {} and t["n_pairs"] == 8 and store.LocalStore().exists("test/tiny-simpo")


def test_votes_are_held_out_whole():
    pairs = [{"vote_id": f"v{i // 3}", "prompt": "p", "chosen": "c", "rejected": "r"} for i in range(30)]
    train, held = trainer.split_votes(pairs, 0.2, seed=0)
    assert len(held) == 2 * 3 and not {p["vote_id"] for p in train} & {p["vote_id"] for p in held}
    assert trainer.split_votes(pairs, 0.0, seed=0) == (pairs, [])


def test_bad_input_fails_before_training(setup, tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        trainer.main(["--loss", "dpo"])
    assert "loss: invalid choice: 'dpo'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        trainer.main(["--policy", "test/tiny-lora"])
    assert f"name a preference dataset (in the local store: {PREFS})" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not a LoRA adapter"):
        trainer.main(argv(setup, tmp_path, "--policy", "test/tiny-base"))
    assert not (tmp_path / "runs").exists()  # refused before any checkpoint folder was made
    with pytest.raises(ConfigError, match="0 pair"):
        trainer.main(argv(setup, tmp_path, "--preferences", "test/none"))
    monkeypatch.setattr(results, "METHODS", results.METHODS - {"orpo", "cpo"})
    assert common.cli(trainer.main, argv(setup, tmp_path)) == 2
    assert "results.METHODS has no 'orpo'" in capsys.readouterr().err


def test_evaluation_routes_start_and_trained_adapters_separately(setup):
    import torch

    from trainers.evaluate import load_for_eval
    from workbench.generation import GenerationSettings, generate
    from workbench import prompts, toxicity

    config = trainer.PreferenceRecipe(policy="test/tiny-lora", preferences=PREFS)
    model, tokenizer, _, folder = trainer.load_policy(config, "cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and trainer.TRAINED in name:
                p.add_(torch.randn_like(p))  # the trained adapter now writes something else
    eval_rows = rows(4)
    settings = GenerationSettings(max_new_tokens=8)
    outputs, extra = trainer.generate_both(model, tokenizer, eval_rows, folder, settings,
                                           toxicity.load_scorer("profanity-check"), 8)
    alone, tok, _ = load_for_eval("test/tiny-lora", "main", None, "fp32")
    start = generate(alone, tok, [prompts.zero_shot(r["dialogue"]) for r in eval_rows], settings)
    assert outputs != start
    assert extra["length_words_start"]["mean"] == pytest.approx(sum(len(s.split()) for s in start) / 4)
    assert extra["length_words"]["mean"] == pytest.approx(sum(len(s.split()) for s in outputs) / 4)


def test_pairs_load_from_a_store_dataset_or_a_jsonl_file(setup, tmp_path):
    from workbench.io import atomic_write_jsonl

    from_store, name = trainer.load_preference_pairs(PREFS)
    assert name == PREFS and len(from_store) == 8 and len({p["vote_id"] for p in from_store}) == 8
    atomic_write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "c", "rejected": ""}] * 3)
    from_file, name = trainer.load_preference_pairs(str(tmp_path / "p.jsonl"))
    assert name == "p.jsonl" and [p["vote_id"] for p in from_file] == ["0", "1", "2"]
    atomic_write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}, {"prompt": "p"}])
    with pytest.raises(ConfigError, match="bad.jsonl pair 1: needs a non-empty prompt and chosen"):
        trainer.load_preference_pairs(str(tmp_path / "bad.jsonl"))
    with pytest.raises(ConfigError, match="not a readable jsonl"):
        trainer.load_preference_pairs(str(tmp_path / "missing.jsonl"))
