"""trainers.reward learns to rank preference pairs; trainers.ppo runs end to end with it as the reward."""

import json

from tests.conftest import DIALOGUES, publish_tiny_lora, rows, write_rows
from trainers import ppo as ppo_trainer
from trainers import reward as reward_trainer
from workbench import corpus, results, store
from workbench.io import atomic_write_jsonl
from workbench.store import LocalStore


def test_reward_model_ranks_held_out_pairs_and_drives_ppo(tiny_model_dir, tmp_store, tmp_path, capsys):
    pairs = corpus.preference_pairs(160, seed=3)
    atomic_write_jsonl(tmp_path / "pairs.jsonl", pairs)
    publish_tiny_lora(tiny_model_dir, tmp_path)
    record = reward_trainer.main(["--pairs", str(tmp_path / "pairs.jsonl"), "--tokenizer", "test/tiny-base",
                                  "--output", "test/reward", "--hidden-size", "32", "--layers", "1",
                                  "--max-steps", "80", "--batch-size", "16", "--learning-rate", "2e-3",
                                  "--checkpoint-dir", str(tmp_path / "runs-reward")])
    saved = results.read(tmp_path / "results" / f"{record['run_id']}.json")  # a schema-valid run record
    accuracy = saved["metrics"]["pairwise_accuracy"]
    assert saved["method"] == "reward" and saved["dataset"]["n"] == accuracy["n"] == 32
    assert accuracy["mean"] > 0.75 and accuracy["ci_low"] <= accuracy["mean"] <= accuracy["ci_high"]  # chance 0.5
    assert saved["metrics"]["train_pairs"] == {"n": 128, "source": "pairs.jsonl"}  # no machine path
    assert saved["revision"] == LocalStore().head("test/reward")
    outcomes = [json.loads(x) for x in (tmp_path / "results" / saved["outputs_file"]).read_text().splitlines()]
    assert len(outcomes) == 32 and sum(o["correct"] for o in outcomes) / 32 == accuracy["mean"]
    assert not (tmp_path / "results" / "reward").exists()
    assert (store.resolve("test/reward") / "model.safetensors").exists()

    data_dir = write_rows(tmp_path / "data", rows(8))
    metrics = ppo_trainer.main(["--policy", "test/tiny-lora", "--dataset", str(data_dir), "--reward",
                                "reward-model:test/reward", "--steps", "3", "--batch-size", "4",
                                "--mini-batch-size", "2", "--ppo-epochs", "1", "--max-new-tokens", "8",
                                "--output", "test/tiny-ppo", "--save-steps", "2",
                                "--checkpoint-dir", str(tmp_path / "runs-ppo")])
    assert "learned reward model test/reward" in metrics["training"]["reward"]
    saved = results.read(tmp_path / "results" / f"{metrics['run_id']}.json")
    assert saved["method"] == "ppo" and saved["dataset"]["n"] == 4
    assert {"toxicity", "toxicity_start", "toxicity_diff_vs_start", "rouge1_diff_vs_start", "rouge2_diff_vs_start",
            "length_words", "length_words_start", "length_words_diff_vs_start"} <= set(saved["metrics"])
    # one length limit: the evaluation generates as long as the rollouts could
    assert saved["generation"]["max_new_tokens"] == saved["training"]["sampling"]["max_new_tokens"] == 8
    log = [json.loads(x) for x in (tmp_path / "results" / saved["training"]["log_file"]).read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert {"reward_mean", "kl", "kl_coef", "entropy", "policy_loss", "value_loss", "clip_frac",
            "response_length", "words"} <= set(log[0])
    adapter = store.resolve("test/tiny-ppo")
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "test/tiny-base"
    # the LoRA weights published in bf16 (save_dtype), and the evaluation scored exactly those weights
    from safetensors import safe_open

    from trainers.evaluate import load_for_eval
    from workbench import data, evaluation
    from workbench.generation import GenerationSettings, generate

    with safe_open(adapter / "adapter_model.safetensors", "pt") as weights:
        assert {weights.get_slice(k).get_dtype() for k in weights.keys() if "lora_" in k} == {"BF16"}
    model, tokenizer, _ = load_for_eval("test/tiny-ppo", "main", None, "fp32")
    eval_rows = data.load_dialogues(str(data_dir), "test")
    recorded = [json.loads(x)["prediction"] for x in (tmp_path / "results" / saved["outputs_file"]).read_text()
                .splitlines()]
    assert generate(model, tokenizer, evaluation.eval_prompts(eval_rows), GenerationSettings(max_new_tokens=8)) \
        == recorded
    assert LocalStore().exists("test/tiny-ppo")
