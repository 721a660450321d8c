"""ROUGE per example (multi-reference), bootstrap confidence intervals, and word-level overlap for highlighting.

ROUGE comes from Google's `rouge_score` package (the implementation behind `evaluate`'s "rouge" metric, which needs
the Hub to load), with the Porter stemmer as `evaluate` uses it. Scores are F1.

Multiple references: for each ROUGE type the example's score is the best F1 over its references (the
`score_multi` convention of `rouge_score`: a summary is as good as its closest reference). This differs from
scoring each (prediction, reference) pair as a separate row, which averages over references; our n is the number of
dialogues, not of pairs.

rougeLsum splits summaries into sentences on newlines; we put each sentence on its own line first, so that
summary-level LCS is computed over sentences as intended.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z0-9#']+|[^\sA-Za-z0-9#']+|\s+")


@functools.cache
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def _sentence_lines(text: str) -> str:
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge_per_example(predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> list[dict[str, float]]:
    """F1 per ROUGE type for each prediction; with several references, the best F1 per type."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets")
    scorer = _scorer()
    out = []
    for prediction, refs in zip(predictions, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError("every prediction needs at least one reference")
        pred = _sentence_lines(prediction)
        best = dict.fromkeys(ROUGE_TYPES, 0.0)
        for ref in refs:
            scores = scorer.score(_sentence_lines(ref), pred)
            for key in ROUGE_TYPES:
                best[key] = max(best[key], float(scores[key].fmeasure))
        out.append(best)
    return out


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling examples with replacement)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def mean_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0) -> dict:
    """{"mean", "std", "n", "ci_low", "ci_high"}: the mean with its 95% bootstrap CI."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci of no values")
    low, high = bootstrap_ci(x, n_boot=n_boot, seed=seed)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0, "n": int(x.size),
            "ci_low": low, "ci_high": high}


def paired_diff_ci(after: Sequence[float], before: Sequence[float], n_boot: int = 1000, seed: int = 0) -> dict:
    """mean_ci of the per-example differences after - before (same examples, same order)."""
    if len(after) != len(before):
        raise ValueError(f"paired values differ in length: {len(after)} vs {len(before)}")
    return mean_ci(np.asarray(after, dtype=float) - np.asarray(before, dtype=float), n_boot=n_boot, seed=seed)


def rouge_summary(per_example: Sequence[dict[str, float]], seed: int = 0) -> dict[str, dict]:
    """{rouge type: mean_ci} over examples."""
    return {key: mean_ci([row[key] for row in per_example], seed=seed) for key in ROUGE_TYPES}


def word_overlap(prediction: str, reference: str) -> list[tuple[str, bool]]:
    """The prediction cut into words and the text between them, each marked True when that word (stemmed,
    lower-cased) occurs in the reference: what the UI highlights as matching (ROUGE-1's view)."""
    from rouge_score import tokenize
    from nltk.stem import porter

    stemmer = porter.PorterStemmer()

    def key(word: str) -> str:
        tokens = tokenize.tokenize(word, stemmer)
        return tokens[0] if tokens else ""

    ref_words = {key(w) for w in _WORD.findall(reference)} - {""}
    return [(piece, bool(key(piece)) and key(piece) in ref_words) for piece in _WORD.findall(prediction)]


_REPEATED_CHARACTER = re.compile(r"(.)\1{5,}")


def is_degenerate(text: str) -> bool:
    """True for the failure modes of a small summarizer: a word 4+ times in a row, a character 6+ times in a row
    ("1111111"), or any 3-word sequence 3+ times (a loop)."""
    words = text.split()
    if any(len(set(words[i : i + 4])) == 1 for i in range(len(words) - 3)):
        return True
    if _REPEATED_CHARACTER.search(text):
        return True
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return any(trigrams.count(t) >= 3 for t in set(trigrams))


_LETTERS = re.compile(r"[a-z]+")
_SPEAKER_TAG = re.compile(r"#person\d+#")


def letter_words(text: str) -> list[str]:
    """The runs of letters in `text`, lower-cased, speaker tags left out: "#Person1#'s divorcesuade" -> ["s",
    "divorcesuade"]."""
    return _LETTERS.findall(_SPEAKER_TAG.sub(" ", text.lower()))


def made_up_words(predictions: Sequence[str], known: set[str]) -> tuple[float, list[str]]:
    """(share of the predictions' words that are not in `known`, those words in order): how often a summarizer
    glues pieces of words into words no text has ("divorce" + "suade" -> "divorcesuade"). `known` is a vocabulary of
    real text (`letter_words` of it), e.g. every DialogSum dialogue and summary: a word outside it is almost always
    made up, since summaries restate what dialogues say."""
    words = [w for p in predictions for w in letter_words(p)]
    unknown = [w for w in words if w not in known]
    return (len(unknown) / len(words) if words else 0.0), unknown


_LONE_LETTER = re.compile(r"(?<![#\w'])[b-hj-z](?![\w'#])", re.IGNORECASE)


def lone_letters(text: str) -> list[str]:
    """Single letters standing as words, other than "a" and "I" and the "s" of "'s": mostly a word its writer began
    and did not finish ("if he c."), or a letter glued to nothing. Real text has a few ("vitamin C", "Plan B")."""
    return _LONE_LETTER.findall(text)
