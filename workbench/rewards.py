"""Rewards for PPO, built on the same scorers the app and evaluator use.

Specs:
    profanity-check[:KIND]        offline classifier; KIND one_minus_p (default) | logodds
    hf:<model>[:KIND]             a Hub/store sequence classifier, e.g. hf:facebook/roberta-hate-speech-dynabench-r4-target
                                  with KIND logit (default; the reference recipe: raw "nothate" logit), logodds or
                                  one_minus_p
    reward-model:<store name>     a reward model trained by `python -m trainers.reward` (its raw score)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from workbench import toxicity
from workbench.tokenizing import encode

RewardFn = Callable[[Sequence[str]], list[float]]
KINDS = {"profanity-check": ("one_minus_p", "logodds"), "hf": ("logit", "logodds", "one_minus_p")}


class RewardSpecError(ValueError):
    """A reward spec that names no known reward; the message lists the accepted forms."""


def parse_spec(spec: str) -> tuple[str, str, str]:
    """(source, reference, kind) of a reward spec, checked without loading anything.

    Hub ids hold no colon, so in `hf:org/model:KIND` the last colon separates the kind; `hf:org/model` alone takes
    the default kind (logit). A suffix that is not a known kind is an error, not part of the model id."""
    source, _, rest = spec.partition(":")
    if source == "reward-model" and rest:
        return source, rest, "score"
    if source == "hf" and rest:
        ref, _, kind = rest.rpartition(":") if ":" in rest else (rest, "", "logit")
        if ref and kind in KINDS["hf"]:
            return source, ref, kind
        raise RewardSpecError(f"unknown reward kind {kind!r} in {spec!r}; expected one of {', '.join(KINDS['hf'])}")
    if source == "profanity-check" and rest in ("",) + KINDS[source]:
        return source, source, rest or "one_minus_p"
    raise RewardSpecError(f"expected profanity-check[:logodds|one_minus_p], hf:<model>[:logit|logodds|one_minus_p] "
                          f"or reward-model:<store name>, got {spec!r}")


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
            enc = encode(self.tokenizer, list(texts[i : i + self.batch_size]), return_tensors="pt", padding=True,
                         truncation=True, max_length=self.max_length)
            scores += self.model(**enc).logits[:, 0].float().tolist()
        return scores


def load_reward(spec: str) -> tuple[RewardFn, str]:
    """(reward function, description) for a spec (see module docstring)."""
    source, ref, kind = parse_spec(spec)
    if source == "reward-model":
        from workbench import store

        return LearnedReward(store.resolve(ref, allow_paths=True)), f"learned reward model {ref}"
    scorer = toxicity.load_scorer(f"hf:{ref}" if source == "hf" else ref)
    return (lambda texts: scorer.reward(list(texts), kind=kind)), f"{scorer.name} ({kind})"
