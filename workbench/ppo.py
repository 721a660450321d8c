"""PPO for encoder-decoder models (T5), compact: the math lives here, the loop in trainers/ppo.py.

The recipe is the one of Ziegler et al. (2019), "Fine-Tuning Language Models from Human Preferences", as trl's old
PPOTrainer implemented it for decoder-only models, adapted to seq2seq:

* a summary is a sequence of actions (decoder tokens); the reward model scores the finished summary, and every
  token pays a KL penalty  -beta * (log pi(a|s) - log pi_ref(a|s))  for drifting from the reference model;
* advantages by GAE over the decoder positions, whitened over the valid tokens of the batch;
* clipped policy loss, clipped value loss (a linear value head on the decoder's last hidden state);
* an adaptive KL coefficient that steers the mean KL towards a target.

T5 specifics: the decoder input is the response shifted right behind `decoder_start_token_id`; responses are right
padded after their `</s>`, and the padding is masked everywhere (log-probs, values, rewards, advantages). Get this
wrong and the KL estimate picks up pad tokens and goes negative.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from workbench.generation import (copy_biased_logits, model_copy_bias, model_copy_inner, model_copy_retell,
                                  model_copy_span)


@dataclasses.dataclass
class PPOConfig:
    learning_rate: float = 2e-4
    batch_size: int = 32
    mini_batch_size: int = 8
    ppo_epochs: int = 4
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    init_kl_coef: float = 0.1
    target_kl: float = 4.0
    horizon: int = 2000
    adaptive_kl: bool = True
    max_grad_norm: float = 1.0


class ValueHead(nn.Module):
    """State value from the decoder hidden state at each response position."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden.float()).squeeze(-1)


# ------------------------------------------------------------------------------------------------ masks and stats


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the valid entries."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    return ((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def split_generated(sequences: torch.Tensor, pad_id: int, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`generate` output of a seq2seq model -> (response ids, response mask).

    Drops the leading decoder start token; keeps each response up to and including its first `</s>`; everything
    after it becomes `pad_id` with mask 0.
    """
    response = sequences[:, 1:]
    is_eos = response == eos_id
    after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0  # strictly after the first eos
    return torch.where(after_eos, torch.full_like(response, pad_id), response), (~after_eos).long()


def block_early_eos(logits: torch.Tensor, eos_id: int | None, min_new_tokens: int) -> torch.Tensor:
    """`generate(min_new_tokens=k)` sets the EOS logit to -inf at the first k positions; the log-probs PPO scores
    must come from that same distribution, or the policy can move EOS mass where it is never sampled (the KL estimate
    then goes negative). Applied identically to policy and reference."""
    if not min_new_tokens or eos_id is None:
        return logits
    early = torch.arange(logits.shape[1], device=logits.device) < min_new_tokens
    is_eos = torch.arange(logits.shape[-1], device=logits.device) == eos_id
    return logits.masked_fill(early[:, None] & is_eos[None, :], float("-inf"))


def seq2seq_logprobs(model, input_ids, attention_mask, response_ids, response_mask, *, return_hidden: bool = False,
                     adapter_names: list[str] | None = None, min_new_tokens: int = 0, config=None):
    """Per-token log-probs and entropies of `response_ids` given the encoder input (0 at padded positions);
    with return_hidden, also the decoder's last hidden states (for the value head). `min_new_tokens` masks EOS at
    the first positions as sampling did; `config` is the model config when `model` is a wrapper (DDP) without one."""
    config = config or model.config
    start = config.decoder_start_token_id
    decoder_input_ids = torch.cat([torch.full_like(response_ids[:, :1], start), response_ids[:, :-1]], dim=1)
    decoder_attention_mask = torch.cat([torch.ones_like(response_mask[:, :1]), response_mask[:, :-1]], dim=1)
    kwargs = {"adapter_names": adapter_names} if adapter_names is not None else {}
    out = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask, output_hidden_states=return_hidden, **kwargs)
    # a model trained with a copy bias samples with it
    logits = copy_biased_logits(out.logits.float(), input_ids, decoder_input_ids, model_copy_bias(config),
                                config.pad_token_id, model_copy_retell(config), model_copy_span(config),
                                model_copy_inner(config))
    logits = block_early_eos(logits, config.eos_token_id, min_new_tokens)
    logp_all = torch.log_softmax(logits, dim=-1)
    logprobs = logp_all.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1) * response_mask
    entropy = -(logp_all.exp() * logp_all.clamp(min=torch.finfo(logp_all.dtype).min)).sum(-1) * response_mask
    if return_hidden:
        return logprobs, entropy, out.decoder_hidden_states[-1]
    return logprobs, entropy


# ------------------------------------------------------------------------------------------------ rewards and GAE


def token_rewards(scores, logprobs, ref_logprobs, mask, kl_coef: float):
    """Per-token rewards: -kl_coef * (logp - ref_logp) everywhere valid, plus the score on the last valid token.
    Returns (rewards, per-token kl)."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1) - 1).clamp(min=0).long()
    rewards = rewards.scatter_add(1, last[:, None], scores.to(rewards.dtype)[:, None])
    return rewards * mask, kl


def gae(rewards, values, mask, gamma: float, lam: float):
    """Generalised advantage estimation over positions; returns (advantages, returns), 0 at masked positions."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    last = rewards.new_zeros(rewards.shape[0])
    steps = rewards.shape[1]
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def prepare_advantages(scores, logprobs, ref_logprobs, values, mask, kl_coef: float, gamma: float = 1.0,
                       lam: float = 0.95) -> dict:
    mask = mask.to(logprobs.dtype)
    rewards, kl = token_rewards(scores, logprobs, ref_logprobs, mask, kl_coef)
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    # stats stay tensors on the inputs' device (no host sync here; callers convert what they log)
    return {"advantages": masked_whiten(advantages, mask), "returns": returns, "rewards": rewards,
            "stats": {"kl": kl.sum(1).mean(), "non_score_reward": rewards.sum(1).mean() - scores.float().mean()}}


# ------------------------------------------------------------------------------------------------ losses


def policy_loss(logprobs, old_logprobs, advantages, mask, cliprange: float):
    """Clipped surrogate: mean over valid tokens of max(-A r, -A clip(r, 1-eps, 1+eps)). Returns (loss, clipfrac)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


def value_loss(values, old_values, returns, mask, cliprange_value: float):
    """Clipped value loss: 0.5 * mean over valid tokens of max((v - R)^2, (v_clip - R)^2). Returns (loss, clipfrac)."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    clipfrac = masked_mean((loss_clipped > loss_unclipped).float(), mask)
    return loss, clipfrac


def ppo_update(model, value_head, optimizer, batch: dict, config: PPOConfig, params_to_clip,
               generator: torch.Generator | None = None, accelerator=None, model_config=None,
               min_new_tokens: int = 0) -> dict:
    """`ppo_epochs` passes over shuffled minibatches of one rollout batch; returns mean statistics.

    With an `accelerate.Accelerator`, `model` and `value_head` are what `accelerator.prepare` returned (DDP wrappers
    when several processes train: backward averages the gradients of every process, so all replicas take the same
    step) and `model_config` is the unwrapped model's config. The minibatch order comes from `generator` (CPU), so
    a resumed run that restores its state draws the same order."""
    n = batch["response_ids"].shape[0]
    totals: dict[str, torch.Tensor] = {}
    updates = 0
    for _ in range(config.ppo_epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.mini_batch_size):
            idx = order[start : start + config.mini_batch_size].to(batch["response_ids"].device)
            mb = {k: v[idx] for k, v in batch.items()}
            stats = _minibatch_step(model, value_head, optimizer, mb, config, params_to_clip, accelerator,
                                    model_config, min_new_tokens)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            updates += 1
    return {key: float(value) / updates for key, value in totals.items()}


def _minibatch_step(model, value_head, optimizer, mb: dict, config: PPOConfig, params_to_clip, accelerator,
                    model_config, min_new_tokens: int) -> dict:
    """One clipped policy + value update on a minibatch; returns its statistics as detached tensors."""
    mask = mb["response_mask"].float()
    logprobs, entropy, hidden = seq2seq_logprobs(model, mb["input_ids"], mb["attention_mask"], mb["response_ids"],
                                                 mb["response_mask"], return_hidden=True, config=model_config,
                                                 min_new_tokens=min_new_tokens)
    values = value_head(hidden) * mask
    pg_loss, pg_clipfrac = policy_loss(logprobs, mb["old_logprobs"], mb["advantages"], mask, config.cliprange)
    vf_loss, vf_clipfrac = value_loss(values, mb["old_values"], mb["returns"], mask, config.cliprange_value)
    loss = pg_loss + config.vf_coef * vf_loss
    optimizer.zero_grad(set_to_none=True)
    if accelerator is not None:
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params_to_clip, config.max_grad_norm)
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params_to_clip, config.max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        approx_kl = 0.5 * masked_mean((logprobs - mb["old_logprobs"]) ** 2, mask)
        return {"policy_loss": pg_loss.detach(), "value_loss": vf_loss.detach(), "clip_frac": pg_clipfrac,
                "value_clip_frac": vf_clipfrac, "entropy": masked_mean(entropy, mask).detach(),
                "approx_kl": approx_kl}


# ------------------------------------------------------------------------------------------------ KL control


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. (2019): beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        super().__init__(init_kl_coef)
        self.target, self.horizon = target, horizon

    def update(self, current: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon
