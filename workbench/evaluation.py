"""Evaluate a summarizer over a whole split: generate, score ROUGE and toxicity per example, write the run.

Used at the end of every trainer and by `python -m trainers.evaluate`. Outputs land in `results/`:
`<run_id>.json` (schema-checked metrics) and `outputs/<run_id>.jsonl` (one row per example).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench import paths, prompts, results, scoring
from workbench.generation import (GenerationSettings, generate, model_copy_bias, model_copy_inner,
                                  model_min_new_tokens, model_no_repeat_ngram_size)
from workbench.io import atomic_write_jsonl


def score_outputs(predictions: Sequence[str], rows: Sequence[dict], scorer=None, *,
                  keep_references: bool = True) -> list[dict]:
    """Per-example records: id, prediction, ROUGE F1s, (with a scorer) toxicity and, if kept, the references."""
    rouge = scoring.rouge_per_example(list(predictions), [row["references"] for row in rows])
    toxicity = scorer.score(list(predictions)) if scorer is not None else [None] * len(rows)
    return [
        {"fname": row.get("fname", ""), "prediction": pred,
         **({"topic": row.get("topic", ""), "references": row["references"]} if keep_references else {}), **r,
         "toxicity": tox}
        for row, pred, r, tox in zip(rows, predictions, rouge, toxicity)
    ]


def keeps_references(dataset: str) -> bool:
    """Only the generated demo corpus's references are copied into per-example outputs: any other dataset's text
    (DialogSum is CC BY-NC-SA; a user's data is theirs) stays where it came from and is joined by id when shown."""
    return dataset == "demo"


def summarize_scores(records: Sequence[dict], *, seed: int = 0) -> dict:
    """ROUGE means with bootstrap CIs, and toxicity (if scored)."""
    metrics = scoring.rouge_summary([{k: r[k] for k in scoring.ROUGE_TYPES} for r in records])
    if records and records[0].get("toxicity") is not None:
        metrics["toxicity"] = scoring.mean_ci([r["toxicity"] for r in records], seed=seed)
    return metrics


@dataclasses.dataclass
class RunInfo:
    """What a run record says about the run besides its scores: the model and how it was made, the data it was
    evaluated on, and when the run started. `split_info` (data.load_train_eval) says whether the evaluation rows were
    held out of a file that also served for training; the record's "dataset" carries it, so no score on a single
    file is shown without that context."""

    model_id: str
    method: str
    base_model: str
    dataset: str
    split: str
    split_info: dict[str, Any] | None = None
    params: dict[str, float] | None = None
    training: dict[str, Any] | None = None
    revision: str | None = None
    run_id: str | None = None
    started_at: str | None = None
    started_clock: float | None = None


def eval_prompts(rows: Sequence[dict]) -> list[str]:
    """The prompts every evaluation generates from (the zero-shot instruction), whatever engine generates."""
    return [prompts.zero_shot(r["dialogue"]) for r in rows]


def carried_decoding(model) -> dict:
    """What a model carries into every decoding beside the settings, as a run record's generation names it: its copy
    bias (`model_copy_bias`; on word starts alone where it leaves the pieces inside a word, `model_copy_inner`), its
    minimum length (`model_min_new_tokens`) and its no-repeat n-gram size (`model_no_repeat_ngram_size`), each only
    where it has one."""
    if model is None:  # a rule-based baseline
        return {}
    bias, floor, no_repeat = model_copy_bias(model), model_min_new_tokens(model), model_no_repeat_ngram_size(model)
    starts = bool(bias and model_copy_inner(model))
    return {**({"model_copy_bias": bias} if bias else {}), **({"model_copy_word_starts": True} if starts else {}),
            **({"model_min_new_tokens": floor} if floor else {}),
            **({"model_no_repeat_ngram_size": no_repeat} if no_repeat else {})}


def evaluate(model, tokenizer, rows: Sequence[dict], run: RunInfo, *,
             settings: GenerationSettings = GenerationSettings(), scorer=None, batch_size: int = 32,
             predictions: Sequence[str] | None = None, extra_metrics: dict | None = None,
             results_dir: str | Path | None = None, progress: bool = True, write: bool = True) -> dict:
    """Generate summaries for every row with the instruction prompt, score them and write the run's files.

    Returns the metrics record (also written, schema-checked, to `results_dir/<run_id>.json`). Pass `predictions`
    when they were already generated (PPO and preference optimisation generate with explicit adapter names; a
    rule-based baseline has no model at all). With `write=False` the record is validated and returned but not written
    (trainers write it once the model is published, with its revision).
    """
    run_id = run.run_id or results.new_run_id(run.method)
    run = dataclasses.replace(run, run_id=run_id, started_at=run.started_at or results.utc_now(),
                              started_clock=run.started_clock or time.time())
    eval_start = time.time()
    if predictions is None:
        predictions = generate(model, tokenizer, eval_prompts(rows), settings,
                               batch_size=batch_size, progress=progress)
    generation = {**settings.as_dict(), **carried_decoding(model), "prompt": "zero_shot", "batch_size": batch_size,
                  "dtype": str(next(model.parameters()).dtype).replace("torch.", "") if model is not None else None,
                  "seconds": round(time.time() - eval_start, 2), "scorer": getattr(scorer, "name", None)}
    records = score_outputs(predictions, rows, scorer, keep_references=keeps_references(run.dataset))
    results_dir = Path(results_dir or paths.RESULTS_DIR)
    outputs_file = Path("outputs") / f"{run_id}.jsonl"
    atomic_write_jsonl(results_dir / outputs_file, records)
    record = run_record(run, {**summarize_scores(records), **(extra_metrics or {})}, generation, n=len(rows),
                        outputs_file=str(outputs_file))
    if write:
        results.write_metrics(record, results_dir / f"{run_id}.json")
    else:
        results.validate(record)
    return record


def run_record(run: RunInfo, metrics: dict, generation: dict, *, n: int, outputs_file: str) -> dict:
    """The schema-1 record of an evaluated run (results.validate checks it); `run` has its id and start filled in."""
    return {
        "schema_version": results.SCHEMA_VERSION, "run_id": run.run_id, "model_id": run.model_id,
        "revision": run.revision, "method": run.method, "base_model": run.base_model, "params": run.params,
        "dataset": dataset_record(run.dataset, run.split, n, run.split_info), "metrics": metrics,
        "generation": generation, "training": run.training, "git_commit": results.git_commit(),
        "started_at": run.started_at, "finished_at": results.utc_now(),
        "wall_time_s": round(time.time() - run.started_clock, 2), "outputs_file": outputs_file,
    }


def dataset_record(dataset: str, split: str, n: int, split_info: dict | None) -> dict:
    """The record's "dataset": id, split and n, plus (given a split_info) whether the evaluation part was held out
    of the training data, how many rows trained, and the sentence that says so."""
    record = {"id": dataset, "split": split, "n": n}
    if split_info:
        record.update(held_out=bool(split_info["held_out"]), train_n=split_info["train"]["n"],
                      holdout_seed=split_info.get("holdout_seed"), note=split_info.get("note", ""))
    return record


def paired_vs_start(start_outputs: list[str], outputs: list[str], start_tox: list[float], tox: list[float],
                    start_rouge: list[dict], rouge: list[dict]) -> dict:
    """Paired metrics of a tuned adapter against its start over the same dialogues (PPO and preference
    optimisation alike): toxicity, ROUGE-1/2 and summary length in words, as *_start and *_diff_vs_start. Length is
    reported beside toxicity because a toxicity reward can be gamed by writing less."""
    start_words, words = [len(x.split()) for x in start_outputs], [len(x.split()) for x in outputs]
    extra = {"toxicity_start": scoring.mean_ci(start_tox),
             "toxicity_diff_vs_start": scoring.paired_diff_ci(tox, start_tox),
             "length_words": scoring.mean_ci(words), "length_words_start": scoring.mean_ci(start_words),
             "length_words_diff_vs_start": scoring.paired_diff_ci(words, start_words)}
    for key in ("rouge1", "rouge2"):
        before, after = [r[key] for r in start_rouge], [r[key] for r in rouge]
        extra[f"{key}_start"] = scoring.mean_ci(before)
        extra[f"{key}_diff_vs_start"] = scoring.paired_diff_ci(after, before)
    return extra


def format_table(runs: Sequence[dict]) -> str:
    """A plain-text ROUGE/toxicity table for terminals and closing notes."""
    header = f"{'model':34} {'method':8} {'n':>5} " + " ".join(f"{k:>17}" for k in scoring.ROUGE_TYPES) + \
        f" {'toxicity':>17}"
    lines = [header, "-" * len(header)]
    for run in runs:
        m = run["metrics"]

        def cell(key):
            if key not in m:
                return f"{'-':>17}"
            e = m[key]
            return f"{e['mean']:.3f} [{e['ci_low']:.3f},{e['ci_high']:.3f}]".rjust(17)

        lines.append(f"{run['model_id'][:34]:34} {run['method'][:8]:8} {run['dataset']['n']:>5} "
                     + " ".join(cell(k) for k in scoring.ROUGE_TYPES) + " " + cell("toxicity"))
    return "\n".join(lines)
