import copy
import json

import pytest

from workbench import paths, results


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
    (lambda r: r.update(wall_time_s="60"), "wall_time_s"),  # strict: a number written as text is not a number
    (lambda r: r["dataset"].update(n=True), "dataset.n"),  # nor is a boolean
    (lambda r: r.update(finshed_at="2026-01-01T00:01:00Z"), "finshed_at"),  # a typo is not silently kept
    (lambda r: r["metrics"]["rouge1"].update(median=0.4), "metrics.rouge1.median"),
    (lambda r: r["dataset"].update(heldout=True), "dataset.heldout"),
    (lambda r: r["generation"].update(beams=4), "generation.beams"),
    (lambda r: r["params"].pop("total"), "params.total"),
    (lambda r: r.update(training=[1, 2]), "training"),
])
def test_schema_errors_name_the_field(mutate, field):
    run = copy.deepcopy(valid_run())
    mutate(run)
    with pytest.raises(results.SchemaError, match=f"^field {field}: ") as err:
        results.validate(run)
    assert "\n" not in str(err.value) and "pydantic" not in str(err.value)


def test_messages_say_what_is_wrong():
    def message(mutate):
        run = copy.deepcopy(valid_run())
        mutate(run)
        with pytest.raises(results.SchemaError) as err:
            results.validate(run)
        return str(err.value)

    assert message(lambda r: r.pop("run_id")) == "field run_id: missing"
    assert message(lambda r: r.update(schema_version=2)) == "field schema_version: expected 1, got 2"
    assert message(lambda r: r["metrics"]["rouge1"].update(ci_low=0.9)) == \
        "field metrics.rouge1: ci_low is above ci_high"
    assert message(lambda r: r["dataset"].update(n=5)) == "field metrics.rouge1.n: differs from dataset.n"
    assert message(lambda r: r.update(extra=1)) == "field extra: not a field of schema version 1"
    assert "'magic'" in message(lambda r: r.update(method="magic"))
    with pytest.raises(results.SchemaError, match="must be a JSON object"):
        results.validate([valid_run()])


def test_validate_returns_the_record_unchanged_and_parse_gives_it_typed():
    run = valid_run()
    assert results.validate(run) is run
    typed = results.parse(run)
    assert typed.dataset.n == 4 and typed.params.trainable == 10 and typed.revision == "abc"
    assert set(typed.ci_metrics()) == set(results.ROUGE_KEYS) and typed.ci_metrics()["rouge1"].ci_high == 0.5


def test_every_committed_result_file_is_a_valid_run():
    """What the repository ships (and the dashboards read) matches the schema: none is silently skipped."""
    files = sorted(paths.REPO_ROOT.glob("results/*.json"))
    assert files
    for path in files:
        assert results.read(path)["run_id"] == path.stem
    assert len(results.list_runs(paths.REPO_ROOT / "results")) == len(files)


def test_the_generation_record_covers_every_decoding_setting():
    from workbench.generation import GenerationSettings

    assert set(GenerationSettings().as_dict()) <= set(results.Generation.model_fields)
    run = valid_run()
    run["generation"] = {**GenerationSettings().as_dict(), "prompt": "zero_shot", "batch_size": 32, "dtype": None,
                         "seconds": 1.5, "scorer": None}
    assert results.validate(run) is run


def test_write_read_list_and_never_overwrite(tmp_path):
    path = results.write_metrics(valid_run(), tmp_path / "lora-1.json")
    assert results.read(path)["run_id"] == "lora-1"
    with pytest.raises(FileExistsError):
        results.write_metrics(valid_run(), path)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    results.write_metrics(valid_run("lora-2"), tmp_path / "lora-2.json")
    assert [r["run_id"] for r in results.list_runs(tmp_path)] == ["lora-1", "lora-2"]


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
