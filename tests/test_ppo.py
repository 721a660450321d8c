"""PPO math against hand-computed values, mask/padding correctness, and a short learning run on a tiny model."""

import math
from collections import Counter
import pytest
import torch

from workbench import ppo


def test_gae_matches_hand_computation_and_ignores_padding():
    # gamma 1, lambda 0.5; rewards 0,0,1; values 0.5 each:
    #   t2: delta = 1 - .5 = .5          A2 = .5
    #   t1: delta = 0 + .5 - .5 = 0      A1 = 0 + .5 * .5 = .25
    #   t0: delta = 0                    A0 = .5 * .25 = .125      returns = A + V
    rewards = torch.tensor([[0.0, 0.0, 1.0, 7.0]])
    values = torch.tensor([[0.5, 0.5, 0.5, 9.0]])  # the padded position holds garbage
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = ppo.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert torch.allclose(adv, torch.tensor([[0.125, 0.25, 0.5, 0.0]]), atol=1e-4)
    assert torch.allclose(ret, torch.tensor([[0.625, 0.75, 1.0, 0.0]]), atol=1e-4)


def test_token_rewards_put_kl_on_every_token_and_score_on_the_last():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.5, -2.0], [-0.5, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    rewards, kl = ppo.token_rewards(torch.tensor([3.0, -1.0]), logprobs, ref, mask, kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, 0.5, -1.0], [-0.5, 0.0, 0.0]]), atol=1e-4)
    assert torch.allclose(rewards, torch.tensor([[-0.05, -0.05, 0.1 + 3.0], [0.05 - 1.0, 0.0, 0.0]]), atol=1e-4)
    stats = ppo.prepare_advantages(torch.tensor([3.0, -1.0]), logprobs, ref, torch.zeros(2, 3), mask, 0.1,
                                   gamma=1.0, lam=1.0)["stats"]
    assert stats["kl"] == pytest.approx((0.0 + -0.5) / 2)  # sum over each summary's tokens, mean over summaries


def test_clipped_policy_loss_by_hand():
    # ratio = [1, 1.5] with A = +1: unclipped -A r = [-1, -1.5]; clipped [-1, -1.2]; max -> [-1, -1.2]
    new = torch.tensor([[0.0, math.log(1.5)]])
    old = torch.zeros(1, 2)
    loss, clipfrac = ppo.policy_loss(new, old, torch.ones(1, 2), torch.ones(1, 2), cliprange=0.2)
    assert loss.item() == pytest.approx(-1.1)
    assert clipfrac.item() == pytest.approx(0.5)
    # A = -1, ratio 0.5: unclipped 0.5, clipped 0.8 -> the pessimistic 0.8
    loss, _ = ppo.policy_loss(torch.tensor([[math.log(0.5)]]), torch.zeros(1, 1), -torch.ones(1, 1),
                              torch.ones(1, 1), cliprange=0.2)
    assert loss.item() == pytest.approx(0.8)
    # masked tokens do not count
    loss, _ = ppo.policy_loss(torch.tensor([[0.0, 5.0]]), torch.zeros(1, 2), torch.ones(1, 2),
                              torch.tensor([[1.0, 0.0]]), cliprange=0.2)
    assert loss.item() == pytest.approx(-1.0)


def test_clipped_value_loss_by_hand():
    # v = 1, v_old = 0, R = 2, clip .2: v_clip = .2; max((1-2)^2, (.2-2)^2) = 3.24; loss = .5 * 3.24
    loss, clipfrac = ppo.value_loss(torch.tensor([[1.0]]), torch.zeros(1, 1), torch.tensor([[2.0]]),
                                    torch.ones(1, 1), cliprange_value=0.2)
    assert loss.item() == pytest.approx(1.62)
    assert clipfrac.item() == 1.0
    # within the clip range both terms agree: .5 * (0.1 - 1)^2
    loss, clipfrac = ppo.value_loss(torch.tensor([[0.1]]), torch.zeros(1, 1), torch.tensor([[1.0]]),
                                    torch.ones(1, 1), cliprange_value=0.2)
    assert loss.item() == pytest.approx(0.405) and clipfrac.item() == 0.0


def test_adaptive_kl_controller_by_hand():
    ctl = ppo.AdaptiveKLController(0.1, target=4.0, horizon=100)
    ctl.update(6.0, n_steps=10)  # error clipped to +0.2 -> x 1.02
    assert ctl.value == pytest.approx(0.102)
    ctl.update(3.0, n_steps=10)  # error -0.25 clipped to -0.2 -> x 0.98
    assert ctl.value == pytest.approx(0.102 * 0.98)
    ctl.update(4.4, n_steps=10)  # error 0.1 -> x 1.01
    assert ctl.value == pytest.approx(0.102 * 0.98 * 1.01)
    fixed = ppo.FixedKLController(0.3)
    fixed.update(100.0, 10)
    assert fixed.value == 0.3
    restored = ppo.AdaptiveKLController(1.0, 4.0, 100)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value


def test_whiten_uses_only_valid_tokens():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = ppo.masked_whiten(x, mask)
    assert torch.allclose(out, torch.tensor([[-1 / math.sqrt(2), 1 / math.sqrt(2), 0.0]]), atol=1e-4)


def test_split_generated_masks_after_the_first_eos():
    seqs = torch.tensor([[0, 5, 6, 1, 0, 0], [0, 7, 1, 4, 9, 9], [0, 3, 3, 3, 3, 3]])
    ids, mask = ppo.split_generated(seqs, pad_id=0, eos_id=1)
    assert ids.tolist() == [[5, 6, 1, 0, 0], [7, 1, 0, 0, 0], [3, 3, 3, 3, 3]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


# ------------------------------------------------------------------------------------------------ on a tiny model


@pytest.fixture
def tiny_policy(tiny_model_dir, tmp_store, tmp_path):
    """A tiny base in the store plus a LoRA adapter (non-zero B, so it differs from the base) as the policy."""
    from tests.conftest import publish_tiny_lora
    from trainers.ppo import PpoRecipe, load_policy

    publish_tiny_lora(tiny_model_dir, tmp_path, sharpen=6.0)
    config = PpoRecipe(policy="test/tiny-lora", batch_size=16, mini_batch_size=8, ppo_epochs=2,
                            learning_rate=1e-3, max_new_tokens=12, min_new_tokens=4, init_kl_coef=0.05,
                            target_kl=6.0, horizon=200)
    model, tokenizer, base_ref, _ = load_policy(config)
    assert base_ref == "test/tiny-base"
    return model, tokenizer, config


def test_zero_kl_when_policy_equals_reference_despite_padding(tiny_policy):
    from tests.conftest import DIALOGUES
    from workbench.prompts import zero_shot

    model, tok, config = tiny_policy
    prompts = [zero_shot(d) for d, _ in DIALOGUES]  # different lengths -> padded encoder input
    enc = tok(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    with torch.no_grad():
        seqs = model.generate(**enc, do_sample=True, top_k=0, max_new_tokens=10, min_new_tokens=2,
                              adapter_names=["ppo"] * len(prompts))
        ids, mask = ppo.split_generated(seqs, tok.pad_token_id, tok.eos_token_id)
        lp, _ = ppo.seq2seq_logprobs(model, enc.input_ids, enc.attention_mask, ids, mask, adapter_names=["ppo"] * 4)
        ref, _ = ppo.seq2seq_logprobs(model, enc.input_ids, enc.attention_mask, ids, mask, adapter_names=["ref"] * 4)
        stats = ppo.prepare_advantages(torch.zeros(4), lp, ref, torch.zeros_like(lp), mask, 0.2)["stats"]
        assert stats["kl"] == pytest.approx(0.0, abs=1e-6)
        assert torch.allclose(lp, ref, atol=1e-6)
        assert (lp[mask == 0] == 0).all() and (lp[mask == 1] < 0).all()
        # each row scored alone (no padding anywhere) gives the same log-probs as in the padded batch
        for i in range(len(prompts)):
            one = tok([prompts[i]], return_tensors="pt")
            n = int(mask[i].sum())
            alone, _ = ppo.seq2seq_logprobs(model, one.input_ids, one.attention_mask, ids[i : i + 1, :n],
                                            mask[i : i + 1, :n], adapter_names=["ref"])
            assert torch.allclose(alone[0], ref[i, :n], atol=1e-5)
        # and the reference differs from the bare base: the LoRA start is really the reference
        with model.disable_adapter():
            base, _ = ppo.seq2seq_logprobs(model, enc.input_ids, enc.attention_mask, ids, mask)
        assert not torch.allclose(base, ref, atol=1e-3)


def test_ppo_raises_a_synthetic_reward_with_bounded_kl(tiny_policy):
    """A synthetic reward the start model scores poorly on; PPO must raise it while the KL stays bounded."""
    from tests.conftest import DIALOGUES
    from trainers.ppo import rollout
    from workbench.prompts import zero_shot

    model, tok, config = tiny_policy
    torch.manual_seed(0)
    prompts = [zero_shot(DIALOGUES[i % 4][0]) for i in range(config.batch_size)]

    torch.manual_seed(0)
    with torch.no_grad():  # the target: a token the start model says now and then
        seqs = model.generate(**tok(prompts, return_tensors="pt", padding=True), do_sample=True, top_k=0,
                              max_new_tokens=12, adapter_names=["ppo"] * len(prompts))
    counts = Counter(t for t in seqs[:, 1:].flatten().tolist() if t not in tok.all_special_ids)
    target = next(piece for piece in (tok.decode([t]).strip() for t, _ in counts.most_common()) if len(piece) >= 2)

    def reward_fn(texts):  # how often the target occurs, saturating at 4
        return [min(text.count(target), 4) / 4 for text in texts]

    value_head = ppo.ValueHead(model.config.d_model)
    params = [p for p in model.parameters() if p.requires_grad] + list(value_head.parameters())
    assert params and all("ppo" in n or "lora" not in n for n, p in model.named_parameters() if p.requires_grad)
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    kl_ctl = ppo.AdaptiveKLController(config.init_kl_coef, config.target_kl, config.horizon)
    history = []
    for step in range(40):
        batch, texts, scores, prepared = rollout(model, value_head, tok, prompts, config, reward_fn, kl_ctl)
        ppo.ppo_update(model, value_head, optimizer, batch, config, params_to_clip=params)
        kl_ctl.update(prepared["stats"]["kl"], config.batch_size)
        history.append((scores.mean().item(), prepared["stats"]["kl"]))
    start = sum(r for r, _ in history[:5]) / 5
    end = sum(r for r, _ in history[-5:]) / 5
    assert end > start + 0.12, history
    assert all(kl < 15 for _, kl in history), history
