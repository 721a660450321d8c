"""trainers.reevaluate regenerates a recorded run's outputs with new decoding settings from the published revision,
keeping what the run was (id, training, wall time) and measuring a policy run against its start again."""

from __future__ import annotations

import json
import shutil

from safetensors.torch import load_file, save_file

from tests.conftest import publish_tiny_lora, rows, write_rows
from trainers import reevaluate
from workbench import evaluation, modeling, prompts, results, store, toxicity
from workbench.generation import GenerationSettings, generate
from workbench.scoring import is_degenerate
from workbench.store import LocalStore


def _publish_trained_adapter(tmp_path) -> None:
    """test/tiny-ppo: the tiny LoRA with its B matrices scaled, standing in for a PPO-tuned adapter."""
    folder = tmp_path / "tiny-ppo"
    shutil.copytree(store.resolve("test/tiny-lora"), folder)
    weights = folder / "adapter_model.safetensors"
    tensors = {k: v * 3 if "lora_B" in k else v for k, v in load_file(weights).items()}
    save_file(tensors, weights)
    LocalStore().publish(folder, "test/tiny-ppo")


def _outputs(results_dir, run) -> list[dict]:
    return [json.loads(x) for x in (results_dir / run["outputs_file"]).read_text().splitlines()]


def test_a_policy_run_is_regenerated_under_its_id_with_paired_differences(tiny_model_dir, tmp_store, tmp_path,
                                                                          capsys):
    publish_tiny_lora(tiny_model_dir, tmp_path, sharpen=8.0)
    _publish_trained_adapter(tmp_path)
    data_dir = write_rows(tmp_path / "data", rows(8))
    data = rows(8)[:4]
    results_dir = tmp_path / "results"
    info = evaluation.RunInfo(model_id="test/tiny-ppo", method="ppo", base_model="test/tiny-base",
                              dataset=str(data_dir), split="test", revision=LocalStore().head("test/tiny-ppo"),
                              params={"total": 10, "trainable": 1, "trainable_share": 0.1},
                              training={"method": "ppo", "policy_start": "test/tiny-lora", "steps": 3})
    old = evaluation.evaluate(None, None, data, info, predictions=["x"] * 4, results_dir=results_dir,
                              settings=GenerationSettings(max_new_tokens=12, no_repeat_ngram_size=0))
    gone = evaluation.evaluate(None, None, data, evaluation.RunInfo(**{**vars(info), "revision": "0" * 12}),
                               predictions=["y"] * 4, results_dir=results_dir)
    part = evaluation.evaluate(None, None, data[:3], info, predictions=["z"] * 3, results_dir=results_dir)

    done = reevaluate.main(["--results-dir", str(results_dir), "--no-repeat-ngram-size", "2", "--batch-size", "3",
                             "--copy-bias", "2"])

    assert [run["run_id"] for run in done] == [old["run_id"]]
    said = capsys.readouterr().out
    assert f"skipped {gone['run_id']}: revision {'0' * 12} of test/tiny-ppo is not in the store" in said
    assert f"skipped {part['run_id']}: {data_dir} [test] has 4 rows, the run scored 3" in said
    new = results.read(results_dir / f"{old['run_id']}.json")  # schema-valid, same file
    assert {k: new[k] for k in ("run_id", "training", "params", "dataset", "wall_time_s", "revision")} == \
        {k: old[k] for k in ("run_id", "training", "params", "dataset", "wall_time_s", "revision")}
    assert new["generation"]["no_repeat_ngram_size"] == 2 and new["generation"]["max_new_tokens"] == 12
    assert new["generation"]["copy_bias"] == 2.0
    assert new["generation"]["reevaluated_at"] >= old["started_at"]

    # the outputs are the published adapter's, with the new settings, and the start is measured beside them
    base = store.resolve("test/tiny-base")
    model = modeling.load_adapters(modeling.load_model(base, dtype="fp32"),
                                   {"ppo": store.resolve("test/tiny-ppo"), "start": store.resolve("test/tiny-lora")})
    settings = GenerationSettings(max_new_tokens=12, no_repeat_ngram_size=2, copy_bias=2.0)
    texts = [prompts.zero_shot(r["dialogue"]) for r in data]
    expected = generate(model, modeling.load_tokenizer(base), texts, settings, adapter_names=["ppo"] * 4)
    start = generate(model, modeling.load_tokenizer(base), texts, settings, adapter_names=["start"] * 4)
    assert expected != start  # the check below can tell the two adapters apart
    written = _outputs(results_dir, new)
    assert [r["prediction"] for r in written] == expected and not any(map(is_degenerate, expected))
    assert new["metrics"]["rouge1"]["mean"] == sum(r["rouge1"] for r in written) / 4
    scorer = toxicity.load_scorer("profanity-check")
    assert abs(new["metrics"]["toxicity_start"]["mean"] - sum(scorer.score(start)) / 4) < 1e-9
    words = [len(x.split()) - len(y.split()) for x, y in zip(expected, start)]
    assert abs(new["metrics"]["length_words_diff_vs_start"]["mean"] - sum(words) / 4) < 1e-9


def test_unknown_runs_are_named_before_anything_loads(tmp_store, tmp_path):
    import pytest

    from trainers.options import ConfigError

    with pytest.raises(ConfigError, match="runs: not in .*: ppo-nope"):
        reevaluate.main(["--results-dir", str(tmp_path / "results"), "--runs", "ppo-nope"])
