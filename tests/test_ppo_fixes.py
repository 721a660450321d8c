"""PPO correctness beyond the maths: device-following tensors, rollouts scored under the distribution they were
sampled from, reward specs checked before any model loads, and batches of distinct rows."""

import dataclasses
import random

import pytest
import torch

from tests.conftest import DIALOGUES, rows, write_rows
from tests.test_ppo import tiny_policy  # noqa: F401 - the tiny LoRA policy fixture
from trainers import ppo as ppo_trainer
from trainers.options import ConfigError
from workbench import ppo, rewards, toxicity
from workbench.prompts import zero_shot


def test_ppo_maths_follows_its_inputs_device():
    """Every tensor the maths creates lives on its inputs' device (here `meta`: a CPU tensor would fail to mix)."""
    meta = torch.device("meta")
    logprobs, ref, values = (torch.zeros(3, 5, device=meta) for _ in range(3))
    mask, scores = torch.ones(3, 5, device=meta), torch.zeros(3, device=meta)
    rewards_, kl = ppo.token_rewards(scores, logprobs, ref, mask, 0.1)
    advantages, returns = ppo.gae(rewards_, values, mask, gamma=1.0, lam=0.95)
    prepared = ppo.prepare_advantages(scores, logprobs, ref, values, mask, 0.1)
    pg, pg_clip = ppo.policy_loss(logprobs, ref, advantages, mask, 0.2)
    vf, vf_clip = ppo.value_loss(values, values, returns, mask, 0.2)
    ids, response_mask = ppo.split_generated(torch.zeros(3, 6, dtype=torch.long, device=meta), 0, 1)
    blocked = ppo.block_early_eos(torch.zeros(3, 5, 7, device=meta), eos_id=1, min_new_tokens=2)
    head = ppo.ValueHead(8).to(meta)
    out = [rewards_, kl, advantages, returns, *prepared["stats"].values(), prepared["advantages"],
           prepared["returns"], pg, pg_clip, vf, vf_clip, ids, response_mask, blocked, head(torch.zeros(3, 5, 8,
                                                                                                          device=meta))]
    assert all(t.device == meta for t in out)
    assert advantages.shape == (3, 5) and blocked.shape == (3, 5, 7)


def test_block_early_eos_masks_exactly_the_first_positions():
    logits = torch.zeros(1, 4, 3)
    out = ppo.block_early_eos(logits, eos_id=1, min_new_tokens=2)
    assert torch.isinf(out[0, :2, 1]).all() and torch.isfinite(out[0, 2:]).all()
    assert torch.isfinite(out[0, :, [0, 2]]).all()
    assert ppo.block_early_eos(logits, eos_id=1, min_new_tokens=0) is logits


@pytest.mark.parametrize("min_new_tokens", [0, 3])
def test_rollout_logprobs_are_those_of_the_sampling_distribution(tiny_policy, min_new_tokens):
    """log_softmax of generate's scores at the sampled tokens == seq2seq_logprobs at every valid position, even when
    the model's own generation_config asks for other sampling (it must not reshape the rollouts)."""
    from transformers import GenerationConfig

    model, tok, config = tiny_policy
    config = dataclasses.replace(config, min_new_tokens=min_new_tokens, max_new_tokens=10)
    inner = model.get_base_model()
    inner.generation_config = GenerationConfig(
        decoder_start_token_id=0, eos_token_id=1, pad_token_id=0, do_sample=True, temperature=0.3, top_k=3,
        top_p=0.5, repetition_penalty=2.0, no_repeat_ngram_size=2, min_new_tokens=6, suppress_tokens=[5])
    prompts = [zero_shot(d) for d, _ in DIALOGUES] * 4
    enc = tok(prompts, return_tensors="pt", padding=True)
    names = ["ppo"] * len(prompts)
    torch.manual_seed(0)
    with torch.no_grad():
        out = ppo_trainer.sample(model, enc, ppo_trainer.sampling_config(config, model.config), names,
                                 output_scores=True, return_dict_in_generate=True)
        ids, mask = ppo.split_generated(out.sequences, tok.pad_token_id, tok.eos_token_id)
        scored, _ = ppo.seq2seq_logprobs(model, enc.input_ids, enc.attention_mask, ids, mask, adapter_names=names,
                                         min_new_tokens=min_new_tokens)
    sampled = torch.log_softmax(torch.stack(out.scores, 1).float(), -1).gather(-1, ids[..., None]).squeeze(-1)
    valid = mask.bool()
    assert valid.sum() > len(prompts)  # there is something to compare
    assert (sampled[valid] - scored[valid]).abs().max() < 1e-4
    assert isinstance(inner.generation_config.repetition_penalty, float)  # the model's own config is back
    assert inner.generation_config.repetition_penalty == 2.0
    if min_new_tokens:
        lengths = mask.sum(1)
        assert (lengths > min_new_tokens).all()  # EOS was blocked where the scoring blocks it


@pytest.mark.parametrize("spec, parsed", [
    ("hf:org/model", ("hf", "org/model", "logit")),
    ("hf:org/model:logodds", ("hf", "org/model", "logodds")),
    ("hf:org/model:one_minus_p", ("hf", "org/model", "one_minus_p")),
    ("profanity-check", ("profanity-check", "profanity-check", "one_minus_p")),
    ("profanity-check:logodds", ("profanity-check", "profanity-check", "logodds")),
    ("reward-model:test/rm", ("reward-model", "test/rm", "score")),
])
def test_reward_specs_parse(spec, parsed):
    assert rewards.parse_spec(spec) == parsed


def test_hf_reward_without_a_kind_scores_with_the_logit(monkeypatch):
    calls = []

    class FakeScorer:
        name = "fake"

        def reward(self, texts, kind):
            calls.append(kind)
            return [0.0] * len(texts)

    monkeypatch.setattr(toxicity, "load_scorer", lambda spec: FakeScorer())
    reward_fn, name = rewards.load_reward("hf:org/model")
    reward_fn(["a summary"])
    assert calls == ["logit"] and name == "fake (logit)"


@pytest.mark.parametrize("spec", ["hf:org/model:bogus", "hf:", "profanity-check:logit", "toxic", "reward-model:"])
def test_a_bad_reward_spec_fails_in_the_config_check(spec, tmp_store, capsys):
    with pytest.raises(SystemExit) as exc:  # the policy does not exist: a later check would name it instead
        ppo_trainer.main(["--policy", "test/missing", "--reward", spec])
    assert exc.value.code == 2
    assert "reward:" in capsys.readouterr().err


def test_batches_hold_distinct_rows_even_with_heated_oversampling():
    is_toxic = [i % 4 == 0 for i in range(40)]  # 10 toxic rows, 16 asked for
    rng = random.Random(0)
    for _ in range(200):
        picked = ppo_trainer.batch_indices(list(range(40)), rng, 32, 0.5, is_toxic)
        assert len(picked) == 32 and len(set(picked)) == 32
        assert sum(is_toxic[i] for i in picked) >= 10
    picked = ppo_trainer.batch_indices(list(range(32)), rng, 32, 0.5, [False] * 32)
    assert sorted(picked) == list(range(32))


def test_fewer_training_rows_than_a_batch_is_a_config_error_before_any_model_loads(tmp_store, tmp_path):
    data_dir = write_rows(tmp_path / "data", rows(8))
    with pytest.raises(ConfigError, match=r"batch_size: 16 rollouts per step but the training split has only 8"):
        ppo_trainer.main(["--policy", "test/missing", "--dataset", str(data_dir), "--batch-size", "16",
                          "--mini-batch-size", "8", "--checkpoint-dir", str(tmp_path / "ckpt")])


def test_length_shortfall_is_relative_and_one_sided():
    out = ppo_trainer.length_shortfall(["one two", "one two three four five", "a b c d e f g h"], [4, 4, 4], 1.0)
    assert torch.allclose(out, torch.tensor([0.5, 0.0, 0.0]))


def test_dashboard_shows_summary_length_next_to_toxicity():
    import pandas as pd

    from workbench.ui import charts, dashboard

    def ci(mean):
        return {"mean": mean, "std": 1.0, "n": 240, "ci_low": mean - 1, "ci_high": mean + 1}

    def run(run_id, finished, start, after):
        return {"run_id": run_id, "method": "ppo", "finished_at": finished, "dataset": {"id": "demo", "split": "test"},
                "metrics": {"length_words_start": ci(start), "length_words": ci(after)}}

    runs = [run("ppo-old", "2026-01-01", 18.0, 10.0), run("ppo-new", "2026-02-01", 17.9, 17.1),
            {"run_id": "lora-1", "method": "lora", "finished_at": "2026-03-01", "metrics": {},
             "dataset": {"id": "demo", "split": "test"}}]
    frame = dashboard.length_frame(runs, "demo / test")
    assert frame["mean"].tolist() == [17.9, 17.1]  # the latest PPO run: its start, then its result
    assert dashboard.length_frame(runs, "other / test").empty
    toxicity = pd.DataFrame([{"model": "LoRA", "measured": "own run", "mean": 0.1, "ci_low": 0.05, "ci_high": 0.15,
                              "n": 240}])
    fig = charts.toxicity_chart(toxicity, "", frame)
    assert [bar.y[0] for bar in fig.data] == [0.1, 17.9, 17.1] and "length" in fig.layout.title.text
    assert len(charts.toxicity_chart(toxicity).data) == 1  # without length data: toxicity alone, as before


def test_shaped_reward_adds_reference_rouge_and_charges_brevity():
    config = ppo_trainer.PpoRecipe(length_penalty=1.0, length_ratio=1.0, rouge_weight=1.0)
    targets = [{"summary": "alpha beta gamma delta", "references": ["alpha beta gamma delta"]}] * 2
    scores = ppo_trainer.shaped_scores(["alpha beta gamma delta", "alpha beta"], lambda t: [0.5] * len(t), config,
                                       targets)
    # exact: 0.5 + ROUGE 1.0; half as long: 0.5 - 0.5 shortfall + mean(ROUGE-1 2/3, ROUGE-2 1/2)
    assert scores.tolist() == pytest.approx([1.5, (2 / 3 + 1 / 2) / 2], abs=1e-4)
    plain = ppo_trainer.PpoRecipe(length_penalty=0.0, rouge_weight=0.0)
    assert ppo_trainer.shaped_scores(["alpha"], lambda t: [0.25], plain, targets[:1]).tolist() == [0.25]
    assert ppo_trainer.shaped_scores(["alpha"], lambda t: [0.25], config, None).tolist() == [0.25]
