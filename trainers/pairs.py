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

from trainers import common
from trainers import config as cfg
from trainers.config import ConfigError, check_repo_id, check_scorer, field
from workbench import modeling, preferences, prompts, scoring, store, toxicity
from workbench.generation import GenerationSettings, generate
from workbench.preferences import Candidate

IF_EXISTS = ("error", "append", "replace")


@dataclasses.dataclass
class PairsConfig:
    policy: str = field("demo/flan-t5-demo-lora", "the model that writes the candidates: a LoRA adapter or a full "
                        "model (store name, Hub id or folder)")
    revision: str = field("main", "revision of the policy")
    base: str | None = field(None, "base model when --policy is a LoRA adapter (default: read from the adapter)")
    dataset: str = field("demo", "dialogues: demo, dialogsum-local, a folder/file or a Hub id")
    split: str = field("train", "split to sample dialogues from (use training dialogues: the pairs train models)")
    limit: int | None = field(None, "use only the first N dialogues")
    output: str | None = field(None, "preference dataset name (namespace/name; default "
                               "local/<policy>-<dataset>-pairs)")
    if_exists: str = field("error", "when --output already holds pairs: error, append or replace")
    push_to_hub: str | None = field(None, "also push the dataset to this Hub dataset repo")
    candidates: int = field(4, "summaries sampled per dialogue (at least 2)")
    temperature: float = field(0.7, "sampling temperature (at 1.0 the 6M-parameter demo policy wrote mostly broken "
                               "text: chosen ROUGE-1 0.38 on 48 demo dialogues, 0.53 at 0.7 with top-p 0.9)")
    top_k: int = field(0, "sampling top-k (0 = off)")
    top_p: float = field(0.9, "nucleus sampling p")
    max_new_tokens: int = field(64, "summary length limit in tokens")
    scorer: str = field("profanity-check", "toxicity scorer: profanity-check (offline) or hf:<model>")
    rouge_margin: float = field(0.1, "the chosen summary's ROUGE-1 F1 may be at most this far below the best "
                                "candidate's")
    length_tolerance: float = field(0.3, "the chosen summary's length (words) may differ from the reference's by "
                                    "at most this share (0.3 = within 30 percent either way)")
    min_gap: float = field(0.1, "toxicity gap (probability) that makes a toxicity pair (the offline classifier "
                           "scatters clean summaries over roughly 0.02-0.15)")
    rouge_gap: float = field(0.1, "ROUGE-1 gap that makes a fidelity pair when no candidate is clearly more toxic")
    batch_size: int = field(16, "dialogues per generation batch (each yields --candidates sequences)")
    dtype: str = field("fp32", "inference precision: fp32, bf16 or auto")
    seed: int = field(0, "sampling seed")

    def validate(self) -> None:
        if self.candidates < 2:
            raise ConfigError(f"candidates: need at least 2 to make a pair, got {self.candidates}")
        for name in ("max_new_tokens", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError("limit: must be positive")
        if self.if_exists not in IF_EXISTS:
            raise ConfigError(f"if_exists: expected one of {', '.join(IF_EXISTS)}, got {self.if_exists!r}")
        for name, low, high in (("rouge_margin", 0, 1), ("min_gap", 0, 1), ("rouge_gap", 0, 1),
                                ("top_p", 1e-9, 1), ("temperature", 1e-9, 10)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name}: must be in [{low:g}, {high:g}], got {getattr(self, name)}")
        if self.length_tolerance <= 0:
            raise ConfigError(f"length_tolerance: must be positive, got {self.length_tolerance}")
        if self.dtype not in {"fp32", "bf16", "auto"}:
            raise ConfigError(f"dtype: expected fp32, bf16 or auto, got {self.dtype!r}")
        check_scorer("scorer", self.scorer)
        for name in ("output", "push_to_hub"):
            if getattr(self, name) is not None:
                check_repo_id(name, getattr(self, name))

    def sampling(self) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=self.max_new_tokens, do_sample=True, temperature=self.temperature,
                                  top_k=self.top_k, top_p=self.top_p)


def words(text: str) -> int:
    return len(text.split())


def choose_pair(texts: list[str], toxicities: list[float], rouge1: list[float], reference_words: float,
                config: PairsConfig) -> tuple[int, int, str] | None:
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


def pairs_for_rows(rows: list[dict], candidates: list[list[str]], scorer, config: PairsConfig, *,
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


def prepare_output(config: PairsConfig) -> str:
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
    from trainers.evaluate import load_for_eval

    config = cfg.parse(PairsConfig, argv, description=__doc__)
    common.seed_everything(config.seed)
    modeling.quiet_transformers()
    rows = common.load_rows(config.dataset, config.split, limit=config.limit, fields="dataset / split")
    folder = common.resolve_model(config.policy, config.revision, field="policy")  # fails before any loading
    name = prepare_output(config)
    scorer = toxicity.load_scorer(config.scorer)
    model, tokenizer, _ = load_for_eval(config.policy, config.revision, config.base, config.dtype)
    revision = folder.name if store.HASH_NAME.match(folder.name) else config.revision
    settings = {**config.sampling().as_dict(), "prompt": "zero_shot", "seed": config.seed, "scorer": config.scorer,
                **{k: getattr(config, k) for k in ("rouge_margin", "length_tolerance", "min_gap", "rouge_gap")}}
    scores, watch = [], common.Stopwatch()
    for start in range(0, len(rows), config.batch_size):
        batch = rows[start : start + config.batch_size]
        texts = generate(model, tokenizer, [prompts.zero_shot(r["dialogue"]) for r in batch
                                            for _ in range(config.candidates)], config.sampling(),
                         batch_size=config.batch_size * config.candidates, seed=config.seed + start)
        candidates = [texts[i : i + config.candidates] for i in range(0, len(texts), config.candidates)]
        records, batch_scores = pairs_for_rows(batch, candidates, scorer, config, model_id=config.policy,
                                               revision=revision, voter=f"auto:{config.scorer}", settings=settings)
        preferences.append_records(name, records)
        scores += batch_scores
        print(f"[pairs] {min(start + config.batch_size, len(rows))}/{len(rows)} dialogues, {len(scores)} pairs")
    preferences.refresh_card(name)
    summary = {**report(name, scores, len(rows)), "seconds": round(watch.seconds, 1)}
    print(f"[pairs] {summary}")
    if config.push_to_hub:
        print(f"[pairs] pushed: {preferences.push_to_hub(name, config.push_to_hub)}")
    return summary


if __name__ == "__main__":
    sys.exit(common.cli(main))
