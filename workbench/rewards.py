"""Rewards for PPO, built on the same scorers the app and evaluator use.

Specs:
    profanity-check[:KIND]        offline classifier; KIND one_minus_p (default) | logodds
    hf:<model>[:KIND]             a Hub/store sequence classifier, e.g. hf:facebook/roberta-hate-speech-dynabench-r4-target
                                  with KIND logit (the reference recipe: raw "nothate" logit), logodds or one_minus_p
    reward-model:<store name>     a reward model trained by `python -m trainers.reward` (its raw score)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from workbench import toxicity

RewardFn = Callable[[Sequence[str]], list[float]]


class LearnedReward:
    """A sequence-classification reward model with one output, scoring summaries (higher = preferred)."""

    def __init__(self, folder, batch_size: int = 32, max_length: int = 256):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(folder), use_safetensors=True, trust_remote_code=False).eval()
        self.batch_size, self.max_length = batch_size, max_length

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str]) -> list[float]:
        scores: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[i : i + self.batch_size]), return_tensors="pt", padding=True,
                                 truncation=True, max_length=self.max_length)
            scores += self.model(**enc).logits[:, 0].float().tolist()
        return scores


def load_reward(spec: str) -> tuple[RewardFn, str]:
    """(reward function, description) for a spec (see module docstring)."""
    if spec.startswith("reward-model:"):
        from workbench import store

        ref = spec.split(":", 1)[1]
        return LearnedReward(store.resolve(ref, allow_paths=True)), f"learned reward model {ref}"
    if spec.startswith("hf:"):
        rest = spec[3:]
        ref, _, kind = rest.rpartition(":") if rest.count(":") else (rest, "", "")
        ref, kind = (ref, kind) if ref else (rest, "logit")
        scorer = toxicity.load_scorer(f"hf:{ref}")
    else:
        name, _, kind = spec.partition(":")
        scorer = toxicity.load_scorer(name)
        kind = kind or "one_minus_p"
    return (lambda texts: scorer.reward(list(texts), kind=kind)), f"{scorer.name} ({kind})"
