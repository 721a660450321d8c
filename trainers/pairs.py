"""Preference pairs without people: sample N candidate summaries per training dialogue from a policy, rank them with
a scorer, and write chosen/rejected pairs to a preference dataset (the same format as Compare votes, voter
"auto:<scorer>").

    python -m trainers.pairs                                         # demo LoRA adapter on the demo corpus
    python -m trainers.pairs --policy you/flan-t5-base-dialogsum-lora --dataset knkarthick/dialogsum --limit 2000 \
        --output you/dialogsum-auto-pairs

Ranking (per dialogue): a toxicity scorer alone would reward the shortest, emptiest summary, so it only chooses
among candidates that still summarise: ROUGE-1 against the reference(s) within --rouge-margin of the best
candidate's, and length (words) within --length-tolerance of the reference's. Chosen = the least toxic of those.
Rejected = the most toxic other candidate when it is at least --min-gap more toxic (reason "auto:toxicity");
otherwise the candidate with the lowest ROUGE-1 when it is at least --rouge-gap lower and not less toxic than the
chosen one by --min-gap or more (reason "auto:rouge"). A dialogue with no such pair is skipped (counted).
Pairs are appended durably after every batch of dialogues; the dataset lives in store/datasets/<output>.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import uuid
from typing import Literal

from trainers import common, options
from trainers.options import ConfigError, arg
from workbench import modeling, preferences, prompts, scoring, store, toxicity
from workbench.generation import GenerationSettings, generate
from workbench.preferences import Candidate


@dataclasses.dataclass
@options.defaults(split="train")
class PairsRecipe(options.Publishing, options.SplitData, options.Policy):
    """The policy writes the candidates (a LoRA adapter or a full model); sample training dialogues, since the pairs
    train models."""

    revision: str = arg("main", "revision of the policy")
    if_exists: Literal["error", "append", "replace"] = arg("error", "what to do when --output already holds pairs")
    # sampling
    candidates: int = arg(4, "summaries sampled per dialogue (at least 2)")
    temperature: float = arg(0.7, "sampling temperature (docs/TRAINERS.md says how it was chosen)", within="(0, 10]")
    top_k: int = arg(0, "sampling top-k (0 = off)")
    top_p: float = arg(0.9, "nucleus sampling p", within="(0, 1]")
    max_new_tokens: int = arg(64, "summary length limit in tokens", positive=True)
    batch_size: int = arg(16, "dialogues per generation batch (each yields --candidates sequences)", positive=True)
    dtype: Literal["fp32", "bf16", "auto"] = arg("fp32", "inference precision")
    seed: int = arg(0, "sampling seed")
    # ranking
    scorer: str = arg("profanity-check", "toxicity scorer: profanity-check (offline) or hf:<model>")
    rouge_margin: float = arg(0.1, "the chosen summary's ROUGE-1 F1 may be at most this far below the best "
                              "candidate's", within="[0, 1]")
    length_tolerance: float = arg(0.3, "the chosen summary's length (words) may differ from the reference's by at "
                                  "most this share (0.3 = within 30 percent either way)", positive=True)
    min_gap: float = arg(0.1, "toxicity gap (probability) that makes a toxicity pair", within="[0, 1]")
    rouge_gap: float = arg(0.1, "ROUGE-1 gap that makes a fidelity pair when no candidate is clearly more toxic",
                           within="[0, 1]")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.candidates < 2:
            raise ConfigError(f"candidates: need at least 2 to make a pair, got {self.candidates}")
        options.check_scorer("scorer", self.scorer)

    def sampling(self) -> GenerationSettings:
        """The candidates are the policy's own samples, as PPO's rollouts are: no n-gram ban (the served default)."""
        return GenerationSettings(max_new_tokens=self.max_new_tokens, do_sample=True, temperature=self.temperature,
                                  top_k=self.top_k, top_p=self.top_p, no_repeat_ngram_size=0)


def words(text: str) -> int:
    return len(text.split())


def choose_pair(texts: list[str], toxicities: list[float], rouge1: list[float], reference_words: float,
                config: PairsRecipe) -> tuple[int, int, str] | None:
    """(chosen index, rejected index, reason) among one dialogue's candidates, or None when they imply no pair.

    Only candidates that still summarise may be chosen (ROUGE-1 near the best, length near the reference), so a
    short or empty summary cannot win on toxicity alone."""
    unique = list({t.strip(): i for i, t in reversed(list(enumerate(texts))) if t.strip()}.values())
    if len(unique) < 2:
        return None
    best_rouge = max(rouge1[i] for i in unique)
    eligible = [i for i in unique if rouge1[i] >= best_rouge - config.rouge_margin
                and abs(words(texts[i]) - reference_words) <= config.length_tolerance * reference_words]
    if not eligible:
        return None
    chosen = min(eligible, key=lambda i: (toxicities[i], -rouge1[i], i))
    others = [i for i in unique if i != chosen]
    toxic = max(others, key=lambda i: (toxicities[i], -rouge1[i], -i))
    if toxicities[toxic] - toxicities[chosen] >= config.min_gap:
        return chosen, toxic, "auto:toxicity"
    worst = min(others, key=lambda i: (rouge1[i], -toxicities[i], i))
    if rouge1[chosen] - rouge1[worst] >= config.rouge_gap and \
            toxicities[worst] > toxicities[chosen] - config.min_gap:
        return chosen, worst, "auto:rouge"
    return None


def pairs_for_rows(rows: list[dict], candidates: list[list[str]], scorer, config: PairsRecipe, *,
                   model_id: str, revision: str, voter: str, settings: dict) -> tuple[list[dict], list[dict]]:
    """(pair records, per-pair scores) for dialogues and their candidate summaries."""
    flat = [t for texts in candidates for t in texts]
    tox = scorer.score(flat)
    rouge = scoring.rouge_per_example(flat, [r["references"] for r, texts in zip(rows, candidates) for _ in texts])
    records, scores, start = [], [], 0
    for row, texts in zip(rows, candidates):
        end = start + len(texts)
        t, r1 = tox[start:end], [x["rouge1"] for x in rouge[start:end]]
        start = end
        picked = choose_pair(texts, t, r1, statistics.median(words(ref) for ref in row["references"]), config)
        if picked is None:
            continue
        chosen, rejected, reason = picked
        side = [Candidate(f"candidate-{i}", model_id, revision, texts[i]) for i in (chosen, rejected)]
        records.append(preferences.pair_record(
            vote_id=uuid.uuid4().hex, index=0, reason=reason, prompt=prompts.zero_shot(row["dialogue"]),
            dialogue=row["dialogue"], chosen=side[0], rejected=side[1], settings=settings, voter=voter,
            created_at=preferences.utc_stamp(), source="auto", dialogue_id=row.get("fname", "")))
        scores.append({"reason": reason, "toxicity": (t[chosen], t[rejected]), "rouge1": (r1[chosen], r1[rejected]),
                       "words": (words(texts[chosen]), words(texts[rejected]))})
    return records, scores


def prepare_output(config: PairsRecipe) -> str:
    """The dataset name, checked against --if-exists before any model loads."""
    name = config.output or common.default_output("pairs", config.policy, config.dataset)
    existing = preferences.load_pairs(name)
    if existing and config.if_exists == "error":
        raise ConfigError(f"output: {name} already holds {len(existing)} pairs; add --if-exists append to add to "
                          "it or --if-exists replace to start over")
    if existing and config.if_exists == "replace":
        preferences.remove(name)
    return name


def report(name: str, scores: list[dict], n_rows: int) -> dict:
    """What was written: counts by reason and mean chosen/rejected toxicity, ROUGE-1 and length."""
    def mean(key: str, side: int) -> float | None:
        return round(statistics.fmean(s[key][side] for s in scores), 4) if scores else None

    out = {"dataset": name, "dialogues": n_rows, "pairs": len(scores), "skipped": n_rows - len(scores),
           "by_reason": {r: sum(s["reason"] == r for s in scores) for r in ("auto:toxicity", "auto:rouge")}}
    for key in ("toxicity", "rouge1", "words"):
        out[key] = {"chosen": mean(key, 0), "rejected": mean(key, 1)}
    return out


def main(argv: list[str] | None = None) -> dict:
    """setup (dialogues, policy, output dataset, scorer) -> sample, rank and append pairs batch by batch -> publish."""
    from trainers.evaluate import load_for_eval

    config = options.parse(PairsRecipe, argv, description=__doc__)
    common.seed_everything(config.seed)
    modeling.quiet_transformers()
    rows = common.load_rows(config.dataset, config.split, limit=config.limit, fields="dataset / split")
    folder = common.resolve_model(config.policy, config.revision, field="policy")  # fails before any loading
    name = prepare_output(config)
    scorer = toxicity.load_scorer(config.scorer)
    model, tokenizer, _ = load_for_eval(config.policy, config.revision, config.base, config.dtype)
    revision = folder.name if store.HASH_NAME.match(folder.name) else config.revision
    scores, watch = [], common.Stopwatch()
    for start in range(0, len(rows), config.batch_size):
        scores += sample_batch(config, model, tokenizer, rows, start, scorer, name=name, revision=revision)
        print(f"[pairs] {min(start + config.batch_size, len(rows))}/{len(rows)} dialogues, {len(scores)} pairs")
    preferences.refresh_card(name)
    summary = {**report(name, scores, len(rows)), "seconds": round(watch.seconds, 1)}
    print(f"[pairs] {summary}")
    if config.push_to_hub:
        print(f"[pairs] pushed: {preferences.push_to_hub(name, config.push_to_hub)}")
    return summary


def sample_batch(config: PairsRecipe, model, tokenizer, rows: list[dict], start: int, scorer, *, name: str,
                 revision: str) -> list[dict]:
    """Candidates for one batch of dialogues, ranked into pairs that are appended to the dataset at once (a killed
    run keeps every finished batch); returns the pairs' scores."""
    batch = rows[start : start + config.batch_size]
    texts = generate(model, tokenizer, [prompts.zero_shot(r["dialogue"]) for r in batch
                                        for _ in range(config.candidates)], config.sampling(),
                     batch_size=config.batch_size * config.candidates, seed=config.seed + start)
    candidates = [texts[i : i + config.candidates] for i in range(0, len(texts), config.candidates)]
    settings = {**config.sampling().as_dict(), "prompt": "zero_shot", "seed": config.seed, "scorer": config.scorer,
                **{k: getattr(config, k) for k in ("rouge_margin", "length_tolerance", "min_gap", "rouge_gap")}}
    records, scores = pairs_for_rows(batch, candidates, scorer, config, model_id=config.policy, revision=revision,
                                     voter=f"auto:{config.scorer}", settings=settings)
    preferences.append_records(name, records)
    return scores


if __name__ == "__main__":
    sys.exit(common.cli(main))
