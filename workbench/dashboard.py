"""The Dashboard's data: plain pandas frames built from the measured runs in results/ (the single source of a run's
metrics), one per chart, plus the provenance table. No gradio and no plotting here: `workbench.ui.charts` draws
these frames.

    dashboard_data(runs, dataset)   -> DashboardData (every frame of one dataset / split)
    runs_table(runs)                -> the provenance table of every run
    length_frame(runs, dataset)     -> summary length before/after PPO
    preference_comparison(runs, dataset) -> PPO vs preference optimisation (ORPO/CPO) against their shared start
    toxicity_stats(records)         -> mean toxicity per model with its CI (the Toxicity tab's sample)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workbench import paths
from workbench.modelset import LABELS, SLOTS

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
CURVE_METRICS = ("loss", "reward_mean", "kl", "toxicity_mean")
PPO_START = "LoRA (PPO start, same run)"
METHOD_ORDER = (*SLOTS, "orpo", "cpo")
PREFERENCE_METHODS = ("orpo", "cpo")  # trainers.preference's runs (simpo records as cpo)
# What PPO and preference optimisation are compared on: metric key, name, scale of its paired difference, unit.
PAIRED = (("toxicity", "toxicity", 1.0, "p(toxic)"), ("rouge1", "ROUGE-1", 100.0, "ROUGE points"),
          ("rouge2", "ROUGE-2", 100.0, "ROUGE points"), ("length_words", "length", 1.0, "words"))

# The reference recipe's published ROUGE-1 on DialogSum (DeepLearning.AI/AWS "Generative AI with LLMs", lab 2
# notebook). Never mixed into measured-run charts.
PUBLISHED_REFERENCE = [
    {"model": "Base FLAN-T5 (zero-shot)", "rouge1": 0.233},
    {"model": "Full fine-tune", "rouge1": 0.422},
    {"model": "LoRA (PEFT)", "rouge1": 0.408},
]
PUBLISHED_SOURCE = ('DeepLearning.AI / AWS "Generative AI with Large Language Models", lab 2 notebook: ROUGE-1 on '
                    "DialogSum from a pre-computed CSV (not measured by this workbench)")


@dataclass
class DashboardData:
    message: str
    datasets: list[str]
    dataset: str | None
    runs: pd.DataFrame
    rouge: pd.DataFrame
    improvement: pd.DataFrame
    params: pd.DataFrame
    base_rouge1: float | None
    toxicity: pd.DataFrame
    toxicity_note: str
    curves: pd.DataFrame
    reference: pd.DataFrame
    preference: PreferenceComparison | None = None


@dataclass
class PreferenceComparison:
    """PPO against preference optimisation on one dataset: `message` (one line; says so when either run is missing),
    `diffs` (method, metric, unit, mean, ci_low, ci_high, n: each run's paired difference against its start) and
    `table` (start, PPO, ORPO/CPO: every metric with its CI, the differences, wall time, samples seen)."""

    message: str
    diffs: pd.DataFrame = field(default_factory=pd.DataFrame)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def empty(self) -> bool:
        return self.diffs.empty


def _round(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def toxicity_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: n, mean, std and the 95% bootstrap CI of the mean toxicity."""
    from workbench import scoring

    rows = []
    for model, group in frame.groupby("model", sort=False):
        ci = scoring.mean_ci(group["toxicity"].tolist())
        rows.append({"model": model, "n": int(ci["n"]), "mean": ci["mean"], "std": ci["std"],
                     "ci_low": ci["ci_low"], "ci_high": ci["ci_high"]})
    return pd.DataFrame(rows, columns=["model", "n", "mean", "std", "ci_low", "ci_high"])


def dataset_key(run: dict) -> str:
    """The Dashboard's dataset choice for a run. Rows held out of the file that also trained the model are a dataset
    of their own, and the choice says so: a score on them is never shown as if it came from a separate split."""
    ds = run.get("dataset") or {}
    held_out = " (held out of the training data)" if ds.get("held_out") else ""
    return f"{ds.get('id', '?')} / {ds.get('split', '?')}{held_out}"


def run_label(run: dict) -> str:
    method = run.get("method", "?")
    return LABELS.get(method, method)


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _latest_per_method(runs: list[dict]) -> list[dict]:
    latest: dict[str, dict] = {}
    for run in runs:
        method = run.get("method", "?")
        if method not in latest or str(run.get("finished_at", "")) > str(latest[method].get("finished_at", "")):
            latest[method] = run
    return sorted(latest.values(), key=lambda r: (_method_rank(r.get("method", "")), r.get("method", "")))


def _score(entry) -> str:
    """Scores in the table all with four decimals, as text, so that 0.37 and 0.3712 line up."""
    return "" if not entry or entry.get("mean") is None else f"{float(entry['mean']):.4f}"


def runs_table(runs: list[dict]) -> pd.DataFrame:
    """Provenance of every measured run, newest first; every cell is text formatted alike (scores to 4 decimals,
    counts with thousands separators, dates as YYYY-MM-DD HH:MM) so that the table reads in columns."""
    rows = []
    for run in runs:
        m, ds, params = run.get("metrics") or {}, run.get("dataset") or {}, run.get("params") or {}
        split = ds.get("split") + (" (held out)" if ds.get("held_out") else "") if ds.get("split") else ""
        trainable = params.get("trainable")
        rows.append({
            "method": run.get("method"), "model": run.get("model_id"), "revision": str(run.get("revision") or "")[:12],
            "dataset": ds.get("id"), "split": split, "n": ds.get("n"),
            "ROUGE-1": _score(m.get("rouge1")), "ROUGE-L": _score(m.get("rougeL")),
            "toxicity": _score(m.get("toxicity")),
            "trainable": f"{trainable:,}" if isinstance(trainable, int) else "",
            "commit": str(run.get("git_commit") or "")[:10],
            "date": str(run.get("finished_at") or "")[:16].replace("T", " "), "run id": run.get("run_id"),
            "_sort": str(run.get("finished_at") or ""),
        })
    columns = ["date", "run id", "method", "model", "dataset", "split", "n", "ROUGE-1", "ROUGE-L", "toxicity",
               "trainable", "revision", "commit"]  # when and which run first: they must stay in view
    frame = pd.DataFrame(rows, columns=[*columns, "_sort"])
    return frame.sort_values("_sort", ascending=False, kind="stable")[columns].reset_index(drop=True)


def _inside(results_dir: Path, name: str) -> Path | None:
    """The file `name` inside the results folder, or None (a run record never makes the app read elsewhere)."""
    root = Path(results_dir).resolve()
    path = (root / str(name)).resolve()
    return path if root in path.parents and path.is_file() else None


def _jsonl(path: Path | None) -> list[dict]:
    if path is None:
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


def read_log(results_dir: Path, log_file: str) -> list[dict]:
    """Rows of a training log; only files inside the results folder are read."""
    return [r for r in _jsonl(_inside(results_dir, log_file)) if isinstance(r.get("step"), (int, float))]


def published_reference() -> pd.DataFrame:
    """The reference recipe's published ROUGE-1, for a separate, labelled table/chart; the source is stated once,
    beside it (PUBLISHED_SOURCE), not in every row."""
    return pd.DataFrame(PUBLISHED_REFERENCE)


def length_frame(runs: list[dict], dataset: str | None) -> pd.DataFrame:
    """Summary length (words) before/after PPO from the latest PPO run on `dataset`: its LoRA start and its result,
    measured in the same run on the same dialogues (empty when no PPO run recorded length)."""
    ppo = [r for r in runs if r.get("method") == "ppo" and dataset_key(r) == dataset
           and {"length_words_start", "length_words"} <= set(r.get("metrics") or {})]
    if not ppo:
        return pd.DataFrame()
    run = max(ppo, key=lambda r: (str(r.get("finished_at", "")), r.get("run_id", "")))
    rows = [(PPO_START, run["metrics"]["length_words_start"], "PPO run: before"),
            (run_label(run), run["metrics"]["length_words"], "PPO run: after")]
    return pd.DataFrame([_ci_row(label, e, measured) for label, e, measured in rows])


def _ci_row(label: str, e: dict, measured: str) -> dict:
    return {"model": label, "measured": measured, "mean": e["mean"], "ci_low": e["ci_low"], "ci_high": e["ci_high"],
            "n": e.get("n")}


def _rouge_rows(run: dict) -> list[dict]:
    label, m = run_label(run), run["metrics"]
    return [{"model": label, "method": run.get("method"), "rouge_type": t, "mean": m[t]["mean"],
             "ci_low": m[t]["ci_low"], "ci_high": m[t]["ci_high"], "n": m[t].get("n"), "run_id": run.get("run_id")}
            for t in ROUGE_TYPES if t in m]


def _params_row(run: dict) -> dict | None:
    """Trainable parameters against ROUGE-1 for an adapted model (a reward model's run has no ROUGE)."""
    params, m = run.get("params") or {}, run["metrics"]
    if run.get("method") == "base" or not params.get("trainable") or "rouge1" not in m:
        return None
    e = m["rouge1"]
    return {"model": run_label(run), "method": run.get("method"), "trainable": params["trainable"],
            "total": params.get("total"), "rouge1": e["mean"], "ci_low": e["ci_low"], "ci_high": e["ci_high"]}


def _toxicity_rows(run: dict) -> list[dict]:
    """Base/full/LoRA from their own evaluation runs; the PPO run's before (its LoRA start) and after."""
    label, m, method = run_label(run), run["metrics"], run.get("method")
    if method in ("base", "full", "lora") and "toxicity" in m:
        return [_ci_row(label, m["toxicity"], "own evaluation run")]
    if method != "ppo":
        return []
    rows = [_ci_row(PPO_START, m["toxicity_start"], "PPO run: before")] if "toxicity_start" in m else []
    return rows + ([_ci_row(label, m["toxicity"], "PPO run: after")] if "toxicity" in m else [])


def _curve_rows(run: dict, results_dir: Path) -> list[dict]:
    log_file = (run.get("training") or {}).get("log_file")
    return [{"model": run_label(run), "method": run.get("method"), "metric": metric, "step": row["step"],
             "value": float(row[metric])}
            for row in (read_log(results_dir, log_file) if log_file else []) for metric in CURVE_METRICS
            if isinstance(row.get(metric), (int, float))]


def _per_example(run: dict, results_dir: Path) -> dict[str, dict]:
    """fname -> the run's per-example scores (its outputs file), or {} when the file is missing."""
    name = run.get("outputs_file")
    rows = _jsonl(_inside(results_dir, name)) if name else []
    return {r["fname"]: r for r in rows if isinstance(r.get("fname"), str)}


def _difference(run: dict, base: dict, rtype: str, results_dir: Path) -> dict:
    """run - base for one ROUGE type, in ROUGE points (x100), with a 95% CI: paired over the dialogues both runs
    scored when their outputs files are there; otherwise from the two runs' own CIs (half-widths added in
    quadrature, as for independent samples), and the row says which."""
    from workbench import scoring

    mine, theirs = _per_example(run, results_dir), _per_example(base, results_dir)
    common = [f for f in mine if f in theirs and isinstance(mine[f].get(rtype), (int, float))
              and isinstance(theirs[f].get(rtype), (int, float))]
    if len(common) >= 2:
        d = scoring.paired_diff_ci([mine[f][rtype] for f in common], [theirs[f][rtype] for f in common])
        low, mean, high, n, how = d["ci_low"], d["mean"], d["ci_high"], d["n"], "paired"
    else:
        a, b = run["metrics"][rtype], base["metrics"][rtype]
        mean = a["mean"] - b["mean"]
        half = math.hypot((a["ci_high"] - a["ci_low"]) / 2, (b["ci_high"] - b["ci_low"]) / 2)
        low, high, n, how = mean - half, mean + half, a.get("n"), "unpaired"
    return {"model": run_label(run), "method": run.get("method"), "rouge_type": rtype, "points": 100 * mean,
            "ci_low": 100 * low, "ci_high": 100 * high, "n": n, "ci": how}


def improvement_frame(chosen: list[dict], results_dir: Path) -> pd.DataFrame:
    """Each adapted model's ROUGE minus the base model's, in absolute ROUGE points with a 95% CI (a relative change
    over a near-zero base is a huge percentage that says little and dwarfs the rest)."""
    base = next((r for r in chosen if r.get("method") == "base"), None)
    if base is None:
        return pd.DataFrame()
    rows = [_difference(run, base, t, results_dir) for run in chosen if run is not base and "rouge1" in run["metrics"]
            for t in ROUGE_TYPES if t in run["metrics"] and t in base["metrics"]]
    return pd.DataFrame(rows)


def _ppo_note(chosen: list[dict]) -> str:
    ppo = next((r for r in chosen if r.get("method") == "ppo"), None)
    if not ppo or "toxicity_diff_vs_start" not in ppo["metrics"]:
        return ""
    d = ppo["metrics"]["toxicity_diff_vs_start"]
    return (f"PPO vs its LoRA start (paired, same dialogues): {d['mean']:+.4f} "
            f"[95% CI {d['ci_low']:+.4f}, {d['ci_high']:+.4f}], n={d.get('n')}")


def dashboard_data(runs: list[dict], dataset: str | None = None, *, results_dir: Path | None = None) -> DashboardData:
    """Long-format frames for every dashboard chart, from measured runs of one dataset (default: the one with the
    most runs). Latest run per method in the charts; every run in the table."""
    results_dir = Path(results_dir or paths.RESULTS_DIR)
    reference, empty = published_reference(), pd.DataFrame()
    if not runs:
        return DashboardData("No runs yet: run `python -m trainers.build_demo` (or any trainer) to measure the models; "
                             "their metrics land in results/.", [], None, runs_table([]), empty, empty, empty, None,
                             empty, "", empty, reference)
    keys = sorted({dataset_key(r) for r in runs}, key=lambda k: (-sum(dataset_key(r) == k for r in runs), k))
    dataset = dataset if dataset in keys else keys[0]
    chosen = _latest_per_method([r for r in runs if dataset_key(r) == dataset])
    rouge = pd.DataFrame([row for run in chosen for row in _rouge_rows(run)])
    base = rouge[rouge["method"] == "base"] if len(rouge) else rouge
    base_rouge1 = next((float(m) for t, m in zip(base.get("rouge_type", []), base.get("mean", [])) if t == "rouge1"),
                       None)
    message = f"{len(runs)} measured run(s); the charts show the latest run per method on {dataset}."
    return DashboardData(message, keys, dataset, runs_table(runs), rouge, improvement_frame(chosen, results_dir),
                         pd.DataFrame([p for p in map(_params_row, chosen) if p]), base_rouge1,
                         pd.DataFrame([row for run in chosen for row in _toxicity_rows(run)]), _ppo_note(chosen),
                         pd.DataFrame([row for run in chosen for row in _curve_rows(run, results_dir)]), reference,
                         preference_comparison(runs, dataset))


# ------------------------------------------------------------------------------------------------ PPO vs ORPO/CPO


def _latest_paired(runs: list[dict], methods: tuple[str, ...], dataset: str | None) -> dict | None:
    """The latest run of `methods` on `dataset` that measured itself against its start (paired differences)."""
    found = [r for r in runs if r.get("method") in methods and dataset_key(r) == dataset
             and all(f"{key}_diff_vs_start" in (r.get("metrics") or {}) for key, *_ in PAIRED)]
    return max(found, key=lambda r: (str(r.get("finished_at", "")), r.get("run_id", ""))) if found else None


def _cell(entry: dict | None, scale: float = 1.0, digits: int = 3, sign: bool = False) -> str:
    """"0.123 [0.100, 0.140]": a mean and its 95% CI as one table cell ("" when not measured)."""
    if not entry:
        return ""
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return (f"{f.format(scale * entry['mean'])} [{f.format(scale * entry['ci_low'])}, "
            f"{f.format(scale * entry['ci_high'])}]")


def samples_seen(run: dict) -> int | None:
    """Training examples a run consumed: its recorded samples_seen, else steps x batch size (PPO: rollouts)."""
    training = run.get("training") or {}
    if isinstance(training.get("samples_seen"), int):
        return training["samples_seen"]
    steps, batch = training.get("steps"), training.get("batch_size")
    return steps * batch if isinstance(steps, int) and isinstance(batch, int) else None


def _comparison_row(label: str, m: dict, suffix: str, run: dict | None) -> dict:
    """One table row: every compared metric (of the start when suffix is "_start"), the paired differences and the
    cost of the run (none for a start)."""
    row = {"model": label}
    for key, name, scale, unit in PAIRED:
        digits, header = (3, name) if key == "toxicity" else (1, f"{name} ({unit.split()[-1]})")
        row[header] = _cell(m.get(key + suffix), scale, digits)
        row[f"Δ {name}"] = "" if run is None else _cell(m.get(f"{key}_diff_vs_start"), scale, digits, sign=True)
    seen = samples_seen(run) if run else None
    row["wall time (s)"] = f"{run['wall_time_s']:,.0f}" if run else ""
    row["samples seen"] = f"{seen:,}" if seen is not None else ""
    row["n"] = str((m.get("toxicity" + suffix) or {}).get("n", ""))
    return row


def _start_rows(runs: list[dict]) -> list[dict]:
    """One row for the shared start when every run measured the same start (same scores on the same n); else one
    start row per run, named after it."""
    starts = {json.dumps({k: run["metrics"].get(f"{k}_start") for k, *_ in PAIRED}, sort_keys=True) for run in runs}
    policy = {(run.get("training") or {}).get("policy_start") for run in runs}
    if len(starts) == 1:
        name = next(iter(policy)) if len(policy) == 1 and None not in policy else "the start adapter"
        return [_comparison_row(f"Start: {name} (shared)", runs[0]["metrics"], "_start", None)]
    return [_comparison_row(f"Start of the {run_label(run)} run", run["metrics"], "_start", None) for run in runs]


def preference_comparison(runs: list[dict], dataset: str | None) -> PreferenceComparison:
    """PPO vs preference optimisation (the latest ORPO/CPO run) on `dataset`: each run's paired differences against
    its start on toxicity, ROUGE-1/2 (points) and length (words), with 95% CIs, and their cost."""
    ppo, pref = _latest_paired(runs, ("ppo",), dataset), _latest_paired(runs, PREFERENCE_METHODS, dataset)
    if pref is None:
        return PreferenceComparison(f"No preference-optimisation run (ORPO/CPO) on {dataset} measured against its "
                                    "start (an evaluation alone has no paired differences): `python -m "
                                    "trainers.preference` records one in results/, then PPO and it are compared here.")
    chosen = [r for r in (ppo, pref) if r is not None]
    diffs = pd.DataFrame([{"model": run_label(run), "method": run["method"], "metric": name, "unit": unit,
                           **{k: scale * run["metrics"][f"{key}_diff_vs_start"][k] for k in ("mean", "ci_low",
                                                                                             "ci_high")},
                           "n": run["metrics"][f"{key}_diff_vs_start"].get("n")}
                          for run in chosen for key, name, scale, unit in PAIRED])
    table = pd.DataFrame([*_start_rows(chosen), *(_comparison_row(run_label(r), r["metrics"], "", r) for r in chosen)])
    deltas = [c for c in table.columns if c.startswith("Δ ")]  # the comparison and its cost first, then the levels
    table = table[["model", *deltas, "wall time (s)", "samples seen",
                   *(c for c in table.columns if c not in {"model", *deltas, "wall time (s)", "samples seen"})]]
    what = " vs ".join(run_label(r) for r in chosen)
    missing = "" if ppo else " No PPO run with paired differences on this dataset to compare with."
    return PreferenceComparison(f"{what} on {dataset}: paired differences against the start adapter on the same "
                                f"dialogues (95% CI).{missing}", diffs, table)
