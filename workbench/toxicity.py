"""Toxicity scorers: one interface for the app, the evaluator and the PPO reward.

    load_scorer("profanity-check")          offline default: alt-profanity-check's linear model (ships in its wheel)
    load_scorer("hf:<model id or store name>")
        a sequence-classification model, e.g. hf:facebook/roberta-hate-speech-dynabench-r4-target (the reference
        recipe); toxicity = probability of its hate/toxic class. Loaded as safetensors, never with remote code.

`score(texts)` gives p(toxic) in [0, 1]. `reward(texts, kind)` turns it into a PPO reward (higher = less toxic):
    one_minus_p   1 - p
    logodds       log((1 - p) / p), clipped to [-LOGODDS_CLIP, LOGODDS_CLIP]
    logit         the raw logit of the "not hate" class (HF classifiers only; the reference recipe's reward)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from workbench.tokenizing import encode

LOGODDS_CLIP = 6.0
TOXIC_LABEL_WORDS = ("hate", "toxic", "offensive", "abusive", "profan")


class ToxicityScorer:
    name = "scorer"

    def score(self, texts: Sequence[str]) -> list[float]:
        raise NotImplementedError

    def reward(self, texts: Sequence[str], kind: str = "logodds") -> list[float]:
        probs = self.score(texts)
        if kind == "one_minus_p":
            return [1.0 - p for p in probs]
        if kind == "logodds":
            eps = 1e-6
            return [max(-LOGODDS_CLIP, min(LOGODDS_CLIP, math.log((1 - p + eps) / (p + eps)))) for p in probs]
        raise ValueError(f"reward kind {kind!r} is not available for {self.name} (use one_minus_p or logodds)")


class ProfanityScorer(ToxicityScorer):
    """alt-profanity-check: a linear SVM over character/word n-grams with calibrated probabilities.

    Its model is sklearn's CalibratedClassifierCV over 5 folds, each a LinearSVC with a sigmoid calibration:
    p = mean over folds of 1 / (1 + exp(a * (w . x + c) + b)). Scored here as that one sparse product over the five
    folds' weights, with the package's own vectorizer: the same probabilities (tests/test_toxicity.py checks them
    against predict_prob) at a seventh of the time. sklearn's predict_proba re-validated labels and inputs on every
    call, 3 ms for the 4 summaries of a Compare request, the server's largest cost after generation under load. A
    model of another shape (another package version) is scored by predict_prob itself."""

    name = "profanity-check"

    def __init__(self):
        from profanity_check import profanity_check as package

        self._predict, self._linear = package.predict_prob, None
        try:
            folds = package.model.calibrated_classifiers_
            if package.model.method == "sigmoid" and all(len(f.calibrators) == 1 for f in folds):
                import numpy as np

                self._linear = (package.vectorizer,
                                np.stack([f.estimator.coef_.ravel() for f in folds]).T,  # features x folds
                                np.array([f.estimator.intercept_[0] for f in folds]),
                                np.array([f.calibrators[0].a_ for f in folds]),
                                np.array([f.calibrators[0].b_ for f in folds]))
        except AttributeError:  # another model layout: predict_prob scores it
            self._linear = None

    def score(self, texts: Sequence[str]) -> list[float]:
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return []
        if self._linear is None:
            return [float(p) for p in self._predict(texts)]
        import numpy as np
        from scipy.special import expit

        vectorizer, weights, intercepts, a, b = self._linear
        decision = np.asarray(vectorizer.transform(texts) @ weights) + intercepts
        return [float(p) for p in expit(-(a * decision + b)).mean(axis=1)]


class HFClassifierScorer(ToxicityScorer):
    """A Hub or local sequence classifier. The toxic class is found from `id2label` (hate/toxic/offensive ...)."""

    def __init__(self, ref: str, batch_size: int = 32, max_length: int = 512, device: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from workbench import modeling, store

        device = torch.device(device) if device is not None else modeling.default_device()

        folder = store.resolve(ref, allow_paths=False)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(folder), use_safetensors=True, trust_remote_code=False).to(device).eval()
        labels = {int(i): str(label).lower() for i, label in self.model.config.id2label.items()}
        toxic = [i for i, label in labels.items() if any(w in label for w in TOXIC_LABEL_WORDS)
                 and not label.startswith(("not", "non", "no "))]
        if len(labels) < 2 or len(toxic) != 1:
            raise ValueError(f"{ref}: cannot tell the toxic class from labels {labels}")
        self.toxic_index = toxic[0]
        self.clean_index = next(i for i in labels if i != self.toxic_index)
        self.name, self.batch_size, self.max_length, self.device, self._torch = ref, batch_size, max_length, device, torch

    def _logits(self, texts: Sequence[str]):
        torch = self._torch
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = encode(self.tokenizer, list(texts[i : i + self.batch_size]), return_tensors="pt",
                             padding=True, truncation=True, max_length=self.max_length).to(self.device)
                chunks.append(self.model(**enc).logits.float().cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, 2)

    def score(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        return self._logits(texts).softmax(-1)[:, self.toxic_index].tolist()

    def reward(self, texts: Sequence[str], kind: str = "logit") -> list[float]:
        if kind == "logit":
            return self._logits(texts)[:, self.clean_index].tolist() if texts else []
        return super().reward(texts, kind)


def load_scorer(spec: str = "profanity-check", device: str | None = None) -> ToxicityScorer:
    """A scorer for a spec ("profanity-check" or "hf:<model>"); cached, so app and trainers share one instance.
    `device`: where an hf: classifier runs (default: cuda if available, else cpu); profanity-check is CPU-only."""
    spec = (spec or "").strip()
    return _load_scorer(spec, str(device) if device is not None and spec.startswith("hf:") else None)


@functools.lru_cache(maxsize=4)
def _load_scorer(spec: str, device: str | None) -> ToxicityScorer:
    if spec == "profanity-check":
        return ProfanityScorer()
    if spec.startswith("hf:") and len(spec) > 3:
        return HFClassifierScorer(spec[3:], device=device)
    raise ValueError(f"toxicity scorer {spec!r}: use 'profanity-check' or 'hf:<model id>'")
