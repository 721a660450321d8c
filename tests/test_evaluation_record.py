"""workbench.evaluation.evaluate takes a RunInfo (what the record says about the run) beside the rows: the record
carries its fields, gets a run id and start time when the caller has none, and is written once, schema-checked."""

from __future__ import annotations

import json

from tests.conftest import rows
from workbench import evaluation, results


def test_a_run_description_becomes_the_record(tmp_path):
    data = rows(4)
    info = evaluation.RunInfo(model_id="baseline/echo", method="baseline", base_model="(none: a rule)",
                              dataset="demo", split="test", params={"total": 0, "trainable": 0, "trainable_share": 0.0},
                              training={"rule": "echo"})
    run = evaluation.evaluate(None, None, data, info, predictions=[r["summary"] for r in data], results_dir=tmp_path)
    assert run["run_id"].startswith("baseline-") and run["started_at"] and run["wall_time_s"] >= 0
    assert (run["model_id"], run["method"], run["training"], run["dataset"]) == \
        ("baseline/echo", "baseline", {"rule": "echo"}, {"id": "demo", "split": "test", "n": 4})
    assert run["metrics"]["rouge1"]["mean"] == 1.0  # each prediction is its reference
    assert json.loads((tmp_path / f"{run['run_id']}.json").read_text()) == results.validate(run)
    kept = evaluation.evaluate(None, None, data, evaluation.RunInfo(**{**vars(info), "run_id": "baseline-x"}),
                               predictions=[r["summary"] for r in data], results_dir=tmp_path, write=False)
    assert kept["run_id"] == "baseline-x" and not (tmp_path / "baseline-x.json").exists()
