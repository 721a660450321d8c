import copy
import json

import pytest

from workbench import results


def valid_run(run_id="lora-1", n=4):
    ci = {"mean": 0.4, "std": 0.1, "n": n, "ci_low": 0.3, "ci_high": 0.5}
    return {"schema_version": 1, "run_id": run_id, "model_id": "demo/x", "revision": "abc", "method": "lora",
            "base_model": "demo/base", "params": {"total": 100, "trainable": 10, "trainable_share": 0.1},
            "dataset": {"id": "demo", "split": "test", "n": n},
            "metrics": {k: dict(ci) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")},
            "generation": {"num_beams": 1}, "training": None, "git_commit": "deadbeef",
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:01:00Z", "wall_time_s": 60.0,
            "outputs_file": "outputs/lora-1.jsonl"}


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("run_id"), "run_id"),
    (lambda r: r.update(schema_version=2), "schema_version"),
    (lambda r: r.update(method="magic"), "method"),
    (lambda r: r["params"].update(trainable=-1), "params.trainable"),
    (lambda r: r["metrics"].pop("rouge2"), "metrics.rouge2"),
    (lambda r: r["metrics"]["rouge1"].update(mean=float("nan")), "metrics.rouge1.mean"),
    (lambda r: r["metrics"]["rouge1"].update(ci_low=0.9), "metrics.rouge1"),
    (lambda r: r["dataset"].update(n=5), "metrics.rouge1.n"),
    (lambda r: r.update(wall_time_s="fast"), "wall_time_s"),
])
def test_schema_errors_name_the_field(mutate, field):
    run = copy.deepcopy(valid_run())
    mutate(run)
    with pytest.raises(results.SchemaError, match=f"field {field}"):
        results.validate(run)


def test_write_read_list_and_never_overwrite(tmp_path):
    path = results.write_metrics(valid_run(), tmp_path / "lora-1.json")
    assert results.read(path)["run_id"] == "lora-1"
    with pytest.raises(FileExistsError):
        results.write_metrics(valid_run(), path)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    results.write_metrics(valid_run("lora-2"), tmp_path / "lora-2.json")
    assert [r["run_id"] for r in results.list_runs(tmp_path)] == ["lora-1", "lora-2"]
    frame = results.to_frame(results.list_runs(tmp_path))
    assert set(frame.metric) == {"rouge1", "rouge2", "rougeL", "rougeLsum"} and len(frame) == 8


def test_run_ids_are_unique_and_sortable():
    ids = {results.new_run_id("full") for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("full-") for i in ids)


def reward_run(n=32):
    run = valid_run("reward-1", n=n)
    run.update(method="reward", generation={})
    run["metrics"] = {"pairwise_accuracy": {"mean": 0.9, "std": 0.3, "n": n, "ci_low": 0.8, "ci_high": 0.97},
                      "train_pairs": {"n": 128, "source": "demo"}}
    return run


def test_a_reward_run_is_measured_by_pairwise_accuracy_not_rouge():
    assert results.validate(reward_run())["method"] == "reward"
    for mutate, field in ((lambda r: r["metrics"].pop("pairwise_accuracy"), "metrics.pairwise_accuracy"),
                          (lambda r: r["dataset"].update(n=5), "metrics.pairwise_accuracy.n"),
                          (lambda r: r["metrics"].update(pairwise_accuracy=0.9), "metrics.pairwise_accuracy")):
        run = reward_run()
        mutate(run)
        with pytest.raises(results.SchemaError, match=f"field {field}"):
            results.validate(run)
    lora_without_rouge = valid_run()
    lora_without_rouge["metrics"] = reward_run()["metrics"]
    with pytest.raises(results.SchemaError, match="field metrics.rouge1"):  # other methods still need ROUGE
        results.validate(lora_without_rouge)


def test_baseline_runs_are_accepted():
    run = valid_run("baseline-1")
    run["method"] = "baseline"
    assert results.validate(run)["method"] == "baseline"
