"""Re-evaluate recorded runs with today's decoding settings, keeping what each run was.

When the workbench's default decoding changes, the scores in `results/` describe outputs the app no longer serves.
This regenerates each selected run's outputs from its published model (the store revision the record names), scores
them, and rewrites the record under the same run id: its training, parameters, dataset and wall time stay; its metrics,
per-example outputs and generation settings are new, and `generation.reevaluated_at` says when. A PPO or preference
run's paired differences against its start adapter are measured again on the same dialogues.

    python -m trainers.reevaluate                      # every run in results/ whose model is in the store
    python -m trainers.reevaluate --runs ppo-20261130-191858-518a92 --no-repeat-ngram-size 0
    python -m trainers.reevaluate --results-dir /tmp/copy-of-results --copy-bias 3   # what-if, results/ untouched

Runs that generate nothing (the reward model, a rule baseline) and runs whose revision is gone are skipped and named.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from trainers import common, options
from trainers.evaluate import ADAPTER, load_for_eval
from trainers.options import ConfigError, arg
from workbench import data, evaluation, modeling, paths, results, scoring, store, toxicity
from workbench.generation import GenerationSettings, generate
from workbench.io import atomic_write_jsonl

START = "start"  # the start adapter's name beside the evaluated one (trainers.evaluate.ADAPTER)


@dataclasses.dataclass
class ReevaluateRecipe(options.Options):
    runs: list[str] = arg([], "run ids to re-evaluate (empty = every run in the results folder)")
    results_dir: str | None = arg(None, "the results folder (None = the workbench's results/)")
    batch_size: int = arg(32, "generation batch size", positive=True)
    no_repeat_ngram_size: int = arg(GenerationSettings.no_repeat_ngram_size,
                                    "no n-gram of this size twice in a summary (0 = plain greedy)", within="[0, 10]")
    copy_bias: float = arg(0.0, "lean towards the dialogue's own words (workbench.generation.CopyBias; 0 = none, as "
                           "the app serves)", within="[0, 20]")


def policy_start(run: dict) -> str | None:
    """The adapter a PPO or preference run started from, if the record names one."""
    return (run.get("training") or {}).get("policy_start")


def generate_outputs(run: dict, rows: list[dict], settings: GenerationSettings, batch_size: int):
    """(outputs, start outputs or None, what the model carries into decoding: `evaluation.carried_decoding`) of the
    run's published model on `rows`, loaded as trainers.evaluate loads it; a policy run's start adapter joins it on
    the same base, in the same mixed-adapter batches."""
    model, tokenizer, _ = load_for_eval(run["model_id"], run["revision"], run["base_model"], "fp32")
    texts, n, carried = evaluation.eval_prompts(rows), len(rows), evaluation.carried_decoding(model)
    if not policy_start(run):
        return generate(model, tokenizer, texts, settings, batch_size=batch_size, progress=True), None, carried
    modeling.attach_adapter(model, common.resolve_model(policy_start(run), field="policy_start"), START)
    outputs = generate(model, tokenizer, texts + texts, settings, adapter_names=[ADAPTER] * n + [START] * n,
                       batch_size=batch_size, progress=True)
    return outputs[:n], outputs[n:], carried


def skip_reason(run: dict) -> str | None:
    """Why a run cannot be re-evaluated here, or None."""
    if not run.get("generation") or run.get("method") == "baseline":
        return "it generates nothing"
    if not run.get("revision"):
        return "it was not published"
    try:
        common.resolve_model(run["model_id"], run["revision"])
    except store.StoreError:
        return f"revision {run['revision']} of {run['model_id']} is not in the store"
    return None


def reevaluate(run: dict, rows: list[dict], settings: GenerationSettings, batch_size: int, results_dir: Path) -> dict:
    """Regenerate, rescore and rewrite one run (see the module docstring); returns the new record."""
    scorer = toxicity.load_scorer(run["generation"].get("scorer") or "profanity-check")
    outputs, start, carried = generate_outputs(run, rows, settings, batch_size)
    records = evaluation.score_outputs(outputs, rows, scorer,
                                       keep_references=evaluation.keeps_references(run["dataset"]["id"]))
    metrics = evaluation.summarize_scores(records)
    if start is not None:
        references = [r["references"] for r in rows]
        metrics.update(evaluation.paired_vs_start(start, outputs, scorer.score(start), [r["toxicity"] for r in records],
                                                  scoring.rouge_per_example(start, references),
                                                  [{k: r[k] for k in scoring.ROUGE_TYPES} for r in records]))
    kept = {k: v for k, v in run["metrics"].items() if k not in metrics and not k.endswith(("_start", "_vs_start"))}
    before = {k: v for k, v in run["generation"].items() if k not in ("model_copy_bias", "model_min_new_tokens")}
    generation = {**before, **settings.as_dict(), **carried, "batch_size": batch_size, "dtype": "float32",
                  "engine": None, "reevaluated_at": results.utc_now()}
    new = results.validate({**run, "metrics": {**metrics, **kept}, "generation": generation})
    atomic_write_jsonl(results_dir / run["outputs_file"], records)
    results.write_metrics(new, results_dir / f"{run['run_id']}.json", replace=True)
    return new


def main(argv: list[str] | None = None) -> list[dict]:
    config = options.parse(ReevaluateRecipe, argv, description=__doc__)
    results_dir = Path(config.results_dir or paths.RESULTS_DIR)
    runs = [r for r in results.list_runs(results_dir) if not config.runs or r["run_id"] in config.runs]
    missing = set(config.runs) - {r["run_id"] for r in runs}
    if missing:
        raise ConfigError(f"runs: not in {results_dir}: {', '.join(sorted(missing))}")
    settings = GenerationSettings(no_repeat_ngram_size=config.no_repeat_ngram_size, copy_bias=config.copy_bias)
    done = []
    for run in runs:
        why, rows, dataset = skip_reason(run), [], run["dataset"]
        if why is None:
            try:
                rows = common.load_rows(dataset["id"], dataset["split"])
            except data.DataError as err:
                why = str(err)
        if why is None and len(rows) != dataset["n"]:  # e.g. rows held out of a training file: not rebuilt here
            why = f"{dataset['id']} [{dataset['split']}] has {len(rows)} rows, the run scored {dataset['n']}"
        if why:
            print(f"skipped {run['run_id']}: {why}")
            continue
        limit = run["generation"].get("max_new_tokens") or settings.max_new_tokens
        new = reevaluate(run, rows, dataclasses.replace(settings, max_new_tokens=limit), config.batch_size,
                         results_dir)
        before, after = run["metrics"]["rouge1"]["mean"], new["metrics"]["rouge1"]["mean"]
        print(f"{run['run_id']}: ROUGE-1 {before:.4f} -> {after:.4f} ({dataset['id']} [{dataset['split']}])")
        done.append(new)
    return done


if __name__ == "__main__":
    raise SystemExit(common.cli(main))
