"""The Dashboard compares PPO and preference optimisation (ORPO/CPO) from their shared start: paired differences on
toxicity, ROUGE-1/2 and length with CIs, and cost; one line instead of an empty chart when there is no preference
run. The Dashboard reads results/ only.

The fixture is a results folder with a PPO and an ORPO record shaped as trainers.ppo and trainers.preference write
them (the same paired metrics, `evaluation.paired_vs_start`), each checked with `workbench.results.validate`.
"""

from __future__ import annotations

import json

import pytest

from workbench import dashboard, results

START = "demo/flan-t5-demo-lora"


def ci(mean, half=0.01, n=40):
    return {"mean": mean, "std": 0.05, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def record(method: str, run_id: str, *, tox: float, r1_diff: float, length_diff: float, training: dict,
           wall: float, start_tox: float = 0.20, dataset: str = "demo") -> dict:
    """A run record with everything paired_vs_start writes: *_start and *_diff_vs_start for toxicity, ROUGE-1/2 and
    length; validated like every record the Dashboard reads."""
    metrics = {"rouge1": ci(0.30 + r1_diff), "rouge2": ci(0.10), "rougeL": ci(0.25), "rougeLsum": ci(0.25),
               "toxicity": ci(tox), "toxicity_start": ci(start_tox), "toxicity_diff_vs_start": ci(tox - start_tox),
               "rouge1_start": ci(0.30), "rouge1_diff_vs_start": ci(r1_diff, 0.005),
               "rouge2_start": ci(0.10), "rouge2_diff_vs_start": ci(-0.002, 0.004),
               "length_words": ci(14.0 + length_diff, 0.5), "length_words_start": ci(14.0, 0.5),
               "length_words_diff_vs_start": ci(length_diff, 0.4)}
    return results.validate({
        "schema_version": results.SCHEMA_VERSION, "run_id": run_id, "model_id": f"demo/flan-t5-demo-{method}",
        "revision": "abc123", "method": method, "base_model": "demo/flan-t5-demo-base",
        "params": {"total": 1_000_000, "trainable": 8_000}, "dataset": {"id": dataset, "split": "test", "n": 40},
        "metrics": metrics, "generation": {"max_new_tokens": 64}, "training": {"policy_start": START, **training},
        "git_commit": "0123abcd", "started_at": "2026-11-30T05:00:00Z",
        "finished_at": f"2026-11-30T0{len(run_id) % 9}:00:00Z",
        "wall_time_s": wall, "outputs_file": f"outputs/{run_id}.jsonl"})


@pytest.fixture
def results_dir(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    runs = [record("ppo", "ppo-fixture", tox=0.15, r1_diff=-0.01, length_diff=-1.5, wall=475.6,
                   training={"steps": 60, "batch_size": 32}),
            record("orpo", "orpo-fixture", tox=0.12, r1_diff=0.004, length_diff=0.5, wall=820.0,
                   training={"steps": 200, "batch_size": 8, "samples_seen": 1600})]
    for run in runs:
        results.write_metrics(run, folder / f"{run['run_id']}.json")
    return folder


def test_ppo_and_orpo_are_compared_on_paired_differences_and_cost(results_dir):
    runs = results.list_runs(results_dir)
    assert {r["method"] for r in runs} == {"ppo", "orpo"}
    comparison = dashboard.preference_comparison(runs, "demo / test")
    assert not comparison.empty and "PPO (detoxified LoRA) vs ORPO-tuned (LoRA) on demo / test" in comparison.message
    diffs = comparison.diffs.set_index(["method", "metric"])
    assert diffs.loc[("ppo", "toxicity"), "mean"] == pytest.approx(-0.05)
    assert diffs.loc[("orpo", "toxicity"), "mean"] == pytest.approx(-0.08)
    assert diffs.loc[("orpo", "ROUGE-1"), "mean"] == pytest.approx(0.4)  # ROUGE points: F1 x 100
    assert diffs.loc[("orpo", "ROUGE-1"), "ci_low"] == pytest.approx(-0.1)
    assert diffs.loc[("ppo", "length"), "ci_high"] == pytest.approx(-1.1)  # words
    assert set(diffs.index.get_level_values("metric")) == {"toxicity", "ROUGE-1", "ROUGE-2", "length"}
    table = comparison.table.set_index("model")
    assert list(table.index) == [f"Start: {START} (shared)", "PPO (detoxified LoRA)", "ORPO-tuned (LoRA)"]
    assert table.loc["ORPO-tuned (LoRA)", "Δ toxicity"] == "-0.080 [-0.090, -0.070]"
    assert table.loc[f"Start: {START} (shared)", "toxicity"] == "0.200 [0.190, 0.210]"
    assert table.loc[f"Start: {START} (shared)", "Δ toxicity"] == ""
    assert table.loc["PPO (detoxified LoRA)", "ROUGE-1 (points)"] == "29.0 [28.0, 30.0]"
    assert (table.loc["PPO (detoxified LoRA)", "samples seen"], table.loc["ORPO-tuned (LoRA)", "samples seen"]) == \
        ("1,920", "1,600")  # PPO: steps x batch (rollouts); ORPO: its recorded samples_seen
    assert (table.loc["PPO (detoxified LoRA)", "wall time (s)"], table.loc["ORPO-tuned (LoRA)", "n"]) == ("476", "40")


def test_different_starts_get_a_row_each(results_dir, tmp_path):
    runs = results.list_runs(results_dir)
    other = [r if r["method"] == "ppo" else {**r, "metrics": {**r["metrics"], "toxicity_start": ci(0.3)}} for r in runs]
    rows = list(dashboard.preference_comparison(other, "demo / test").table["model"])
    assert rows[:2] == ["Start of the PPO (detoxified LoRA) run", "Start of the ORPO-tuned (LoRA) run"]


def test_without_a_preference_run_one_line_and_no_chart(results_dir, tmp_path):
    from workbench.ui import dashboard as view

    ppo_only = [r for r in results.list_runs(results_dir) if r["method"] == "ppo"]
    comparison = dashboard.preference_comparison(ppo_only, "demo / test")
    assert comparison.empty and comparison.message.startswith("No preference-optimisation run (ORPO/CPO) on demo")
    message, chart, table = view.preference_outputs(comparison)
    assert "No preference-optimisation run" in message and not chart.visible and not table.visible
    orpo_only = [r for r in results.list_runs(results_dir) if r["method"] == "orpo"]
    alone = dashboard.preference_comparison(orpo_only, "demo / test")
    assert not alone.empty and "No PPO run" in alone.message and set(alone.diffs["method"]) == {"orpo"}
    assert dashboard.preference_comparison(orpo_only, "other / test").empty  # another dataset: not compared


def test_the_chart_has_a_panel_per_metric_with_ci_bars(results_dir):
    from workbench.ui import charts

    comparison = dashboard.preference_comparison(results.list_runs(results_dir), "demo / test")
    fig = charts.preference_chart(comparison.diffs)
    assert len(fig.data) == 8  # 4 metrics x (PPO, ORPO)
    assert [a.text for a in fig.layout.annotations][:4] == ["toxicity (p(toxic))", "ROUGE-1 (ROUGE points)",
                                                            "ROUGE-2 (ROUGE points)", "length (words)"]
    orpo_tox = next(t for t in fig.data if t.name == "ORPO-tuned (LoRA)")
    assert orpo_tox.y[0] == pytest.approx(-0.08) and orpo_tox.error_y.array[0] == pytest.approx(0.01)
    assert charts.preference_chart(dashboard.preference_comparison([], "demo / test").diffs).layout.annotations


def test_the_service_reads_results_only_not_the_stores_metrics_json(results_dir, tmp_path, monkeypatch):
    """A metrics.json next to a served model is not a second source: only results/ is read."""
    from types import SimpleNamespace

    from workbench.app_service import WorkbenchService

    folder = tmp_path / "served"
    folder.mkdir()
    stray = record("lora", "lora-store-only", tox=0.1, r1_diff=0.0, length_diff=0.0, wall=1.0, training={})
    (folder / "metrics.json").write_text(json.dumps(stray))
    status = {"lora": SimpleNamespace(ok=True, folder=folder)}
    service = WorkbenchService(SimpleNamespace(status=status, slots=["lora"]), results_dir=results_dir)
    assert sorted(r["run_id"] for r in service.runs()) == ["orpo-fixture", "ppo-fixture"]
    d = service.dashboard("demo / test")
    assert "source" not in d.runs.columns and not d.preference.empty
