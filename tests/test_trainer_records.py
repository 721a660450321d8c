"""What a trainer run records and where it publishes: default output names never replace the served demo models,
a single data file holds out its evaluation part, the evaluator records what the run trained, progress bars stay on
under quiet logs, and each demo model's recipe is a committed config that reproduces it."""

from __future__ import annotations

import json

import pytest

from tests.conftest import publish_tiny_lora, rows, write_rows
from trainers import build_demo, common, evaluate, full, lora, pretrain, sft
from trainers import options
from workbench import data, modeling, paths, store
from workbench.io import atomic_write_jsonl
from workbench.store import LocalStore


def flagged(**options) -> list[str]:
    return [x for key, value in options.items() for x in (f"--{key.replace('_', '-')}", str(value))]


TINY = dict(model="test/tiny-base", max_steps=2, batch_size=4, learning_rate=1e-2, logging_steps=1, precision="fp32",
            max_new_tokens=4, warmup_ratio=0.0)


@pytest.fixture
def family(tiny_model_dir, tmp_store, tmp_path, monkeypatch):
    publish_tiny_lora(tiny_model_dir, tmp_path)  # test/tiny-base and test/tiny-lora, published without a record
    monkeypatch.setattr(common, "RUNS_DIR", tmp_path / "runs")
    return write_rows(tmp_path / "data", rows(8))


# ------------------------------------------------------------------------------------------------ default outputs


def test_default_output_names_are_new_local_names_never_demo_ones():
    assert common.default_output("lora", "demo/flan-t5-demo-base", "demo") == "local/flan-t5-demo-base-demo-lora"
    assert common.default_output("full", "google/flan-t5-base", "knkarthick/dialogsum") == \
        "local/flan-t5-base-dialogsum-full"
    assert common.default_output("lora", "/tmp/my models/base/", "/data/x/train.jsonl") == "local/base-train-lora"
    assert common.default_output("ppo", "demo/flan-t5-demo-lora", "../d..a?") == "local/flan-t5-demo-lora-d.a-ppo"
    for method in ("full", "lora", "ppo", "reward", "pretrain"):
        name = common.default_output(method, "demo/flan-t5-demo-" + "x" * 200, "demo")
        assert store.validate_repo_id(name) and name.startswith("local/") and len(name) <= 102
    for config in (full.FullRecipe(), lora.LoraRecipe(), pretrain.PretrainRecipe()):
        assert config.output is None  # resolved per run to a local/... name


def test_a_run_without_output_never_touches_the_served_demo_models(family, tmp_path):
    LocalStore().publish(tmp_path / "tiny-lora", "demo/flan-t5-demo-lora")  # what the app serves
    served = LocalStore().head("demo/flan-t5-demo-lora")
    run = lora.main(flagged(**TINY, dataset=family, eval_limit=1))
    assert run["model_id"] == "local/tiny-base-data-lora" and LocalStore().exists("local/tiny-base-data-lora")
    assert LocalStore().revisions("demo/flan-t5-demo-lora") == [served]
    assert (tmp_path / "runs" / "lora" / "local--tiny-base-data-lora" / "COMPLETED").is_file()  # follows the name


# ------------------------------------------------------------------------------------------------ held-out split


def test_a_single_file_holds_out_its_evaluation_rows_and_the_record_says_so(family, tmp_path):
    single = tmp_path / "all.jsonl"
    atomic_write_jsonl(single, [{k: r[k] for k in ("fname", "dialogue", "summary", "topic")} for r in rows(10)])
    run = full.main(flagged(**TINY, dataset=single, output="test/single-file"))
    train, held, info = data.load_train_eval(str(single), "train", "test")
    assert info["held_out"] and len(held) == 1 and len(train) == 9
    assert run["dataset"]["held_out"] is True and run["dataset"]["n"] == 1 and run["dataset"]["train_n"] == 9
    assert "held out" in run["dataset"]["note"]
    assert run["training"]["n"] == 9 and run["training"]["split_info"]["eval"]["n"] == 1
    outputs = [json.loads(x) for x in (paths.RESULTS_DIR / run["outputs_file"]).read_text().splitlines()]
    assert [o["fname"] for o in outputs] == [r["fname"] for r in held]  # scored on the held-out row only
    assert not {o["fname"] for o in outputs} & {r["fname"] for r in train}


# ------------------------------------------------------------------------------------------------ evaluator params


def test_the_evaluator_records_what_the_run_trained(family, tmp_path):
    from peft import PeftModel

    trained = lora.main(flagged(**TINY, dataset=family, output="test/trained-lora", eval_limit=1))
    common_flags = flagged(dataset=family, limit=1, max_new_tokens=4)
    again = evaluate.main(["--model", "test/trained-lora", *common_flags])
    assert again["params"] == trained["params"] and again["params"]["trainable"] > 0 and again["method"] == "lora"
    base = evaluate.main(["--model", "test/tiny-base", *common_flags])
    assert base["params"]["trainable"] == 0 and base["params"]["total"] > 0
    # an adapter published without a record: its tensors are what trained
    unrecorded = evaluate.main(["--model", "test/tiny-lora", *common_flags])
    model = PeftModel.from_pretrained(modeling.load_model(store.resolve("test/tiny-base")),
                                      str(store.resolve("test/tiny-lora")), is_trainable=True)
    assert unrecorded["params"] == modeling.count_parameters(model) and unrecorded["params"]["trainable"] > 0


# ------------------------------------------------------------------------------------------------ progress bars


def test_training_arguments_keep_the_progress_bar_under_quiet_logs(tmp_path):
    modeling.quiet_transformers()
    args = sft.training_arguments(lora.LoraRecipe(), tmp_path / "sft")
    assert args.disable_tqdm is False
    assert pretrain.training_arguments(pretrain.PretrainRecipe(), tmp_path / "pretrain").disable_tqdm is False


# ------------------------------------------------------------------------------------------------ recipes


def recorded_training(repo: str) -> dict:
    return json.loads((store.resolve(repo) / "metrics.json").read_text())["training"]


@pytest.mark.parametrize("name, cls, repo", [("full", full.FullRecipe, "demo/flan-t5-demo-full"),
                                             ("lora", lora.LoraRecipe, "demo/flan-t5-demo-lora"),
                                             ("pretrain", pretrain.PretrainRecipe, "demo/flan-t5-demo-base")])
def test_each_recipe_reproduces_the_committed_demo_model(name, cls, repo):
    path = f"configs/recipes/{name}.yaml"
    config = options.parse(cls, ["--config", str(paths.REPO_ROOT / path)], description="")
    assert config.output == repo and options.recipe_record(config) == {"recipe": path}
    record = recorded_training(repo)  # what built the committed model
    assert (config.max_steps, config.batch_size, config.learning_rate, config.seed) == \
        (record["steps"], record["batch_size"], record["learning_rate"], record["seed"])
    assert (config.dataset, getattr(config, "train_split", getattr(config, "split", None))) == \
        (record["dataset"], record["split"])
    if name == "lora":
        assert record["lora"] == {"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
                                  "target_modules": config.target_modules}
        assert config.learning_rate != lora.LoraRecipe().learning_rate  # why the file exists: defaults differ
    if name == "pretrain":
        assert (config.vocab_size, config.extra_dialogues) == (record["vocab_size"], record["extra_dialogues"])


def test_make_demo_runs_every_trainer_from_its_recipe():
    for step, trainer in {"base": "pretrain", "full": "full", "lora": "lora", "reward": "reward", "ppo": "ppo"}.items():
        command = build_demo.STEPS[step]
        assert command == ["-m", f"trainers.{trainer}", "--config", f"configs/recipes/{trainer}.yaml"]
        assert (paths.REPO_ROOT / command[-1]).is_file(), command[-1]


def test_the_record_names_the_recipe_and_what_overrode_it(family, tmp_path):
    recipe = tmp_path / "my-recipe.yaml"
    recipe.write_text("model: test/tiny-base\nmax_steps: 1\nbatch_size: 4\nprecision: fp32\neval_limit: 1\n"
                      "max_new_tokens: 4\noutput: test/from-recipe\n")
    run = full.main(["--config", str(recipe), "--dataset", str(family), "--max-steps", "2"])
    assert run["training"]["recipe"] == "my-recipe.yaml"  # outside the repository: its name, never a machine path
    assert run["training"]["recipe_overrides"] == ["dataset", "max_steps"] and run["training"]["steps"] == 2
    assert "my-recipe.yaml" in (store.resolve("test/from-recipe") / "README.md").read_text()
    assert options.recipe_name(paths.REPO_ROOT / "configs" / "recipes" / "lora.yaml") == "configs/recipes/lora.yaml"
    plain = full.main(flagged(**TINY, dataset=family, output="test/no-recipe", eval_limit=1))
    assert plain["training"]["recipe"] is None
