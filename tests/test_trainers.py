"""The full and LoRA trainers end to end on a tiny model: training lowers the loss, results and store entries are
written, an interrupted run resumes, and the same trainers run on DialogSum rows."""

import json

import pytest
import transformers

from tests.conftest import needs_dialogsum, rows
from trainers import full, lora
from workbench import data, results, store
from workbench.io import atomic_write_jsonl
from workbench.store import LocalStore


@pytest.fixture
def setup(tiny_model_dir, tmp_store, tmp_path):
    LocalStore().publish(tiny_model_dir, "test/tiny-base")
    folder = tmp_path / "data"
    all_rows = rows(8)
    for split, part in {"train": all_rows, "validation": all_rows[:2], "test": all_rows[:4]}.items():
        atomic_write_jsonl(folder / f"{split}.jsonl", [{k: r[k] for k in ("fname", "dialogue", "summary", "topic")}
                                                       for r in part])
    return folder, tmp_path


def flags(folder, tmp_path, output, steps=30, **extra):
    args = {"model": "test/tiny-base", "dataset": str(folder), "output": output, "max-steps": steps,
            "batch-size": 4, "learning-rate": 3e-3, "logging-steps": 5, "save-steps": 100, "precision": "fp32",
            "checkpoint-dir": str(tmp_path / "runs" / output.replace("/", "--")), "max-new-tokens": 8,
            "warmup-ratio": 0.0, **extra}
    return [x for k, v in args.items() for x in (f"--{k}", str(v))]


def losses(run):
    log = run["training"]["log_file"]
    from workbench import paths

    return [r["loss"] for r in (json.loads(x) for x in (paths.RESULTS_DIR / log).read_text().splitlines())]


def test_full_finetune_lowers_loss_evaluates_and_publishes(setup):
    folder, tmp_path = setup
    run = full.main(flags(folder, tmp_path, "test/tiny-full"))
    curve = losses(run)
    assert len(curve) == 6 and curve[-1] < 0.7 * curve[0]
    saved = results.read(next(p for p in (tmp_path / "results").glob("full-*.json")))
    assert saved["method"] == "full" and saved["dataset"]["n"] == 4 and saved["params"]["trainable_share"] == 1.0
    assert saved["training"]["steps"] == 30
    outputs = [json.loads(x) for x in (tmp_path / "results" / "outputs" / f"{run['run_id']}.jsonl").read_text()
               .splitlines()]
    assert len(outputs) == 4 and {"prediction", "rouge1", "toxicity"} <= set(outputs[0])
    published = store.resolve("test/tiny-full")
    assert (published / "model.safetensors").exists() and (published / "README.md").exists()
    assert json.loads((published / "metrics.json").read_text())["run_id"] == run["run_id"]


def test_lora_trains_only_adapters_and_round_trips_through_the_store(setup):
    from peft import PeftModel

    from workbench import modeling, prompts
    from workbench.generation import GenerationSettings, generate

    folder, tmp_path = setup
    run = lora.main(flags(folder, tmp_path, "test/tiny-lora", **{"learning-rate": 1e-2}))
    curve = losses(run)
    assert curve[-1] < 0.8 * curve[0]
    assert 0 < run["params"]["trainable_share"] < 0.5
    assert run["training"]["lora"] == {"r": 32, "alpha": 32, "dropout": 0.05, "target_modules": ["q", "v"]}
    adapter = store.resolve("test/tiny-lora")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "test/tiny-base" and config["r"] == 32
    from safetensors import safe_open

    with safe_open(adapter / "adapter_model.safetensors", "pt") as weights:  # save_dtype bf16 (the default)
        assert {weights.get_slice(k).get_dtype() for k in weights.keys()} == {"BF16"}
    # what the trainer evaluated (its adapter rounded to bf16 in memory) is what loads back from the store
    base = modeling.load_model(store.resolve("test/tiny-base"), dtype="fp32")
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    tok = modeling.load_tokenizer(adapter)
    rows_ = data.load_dialogues(str(folder), "test")
    again = generate(model, tok, [prompts.zero_shot(r["dialogue"]) for r in rows_], GenerationSettings(max_new_tokens=8))
    outputs = [json.loads(x)["prediction"] for x in
               (tmp_path / "results" / "outputs" / f"{run['run_id']}.jsonl").read_text().splitlines()]
    assert again == outputs


def test_interrupted_run_resumes_from_its_last_checkpoint(setup, monkeypatch, capsys):
    folder, tmp_path = setup
    argv = flags(folder, tmp_path, "test/tiny-resume", steps=20, **{"save-steps": 5})
    original = transformers.Trainer.training_step
    calls = {"n": 0}

    def dies_at_step_13(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt("simulated kill")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", dies_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        full.main(argv)
    monkeypatch.setattr(transformers.Trainer, "training_step", original)
    assert not LocalStore().exists("test/tiny-resume")  # nothing half-published
    checkpoints = sorted(p.name for p in (tmp_path / "runs" / "test--tiny-resume").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-10", "checkpoint-5"]
    capsys.readouterr()
    run = full.main(argv)
    assert "resuming from" in capsys.readouterr().out and "checkpoint-10" in run["training"].get("resumed_from", "")
    assert run["training"]["steps"] == 20 and LocalStore().exists("test/tiny-resume")


def test_bad_config_is_reported_before_training(setup, tmp_path, capsys):
    folder, _ = setup
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("learning_rate: 0.001\nbatch_sise: 4\n")
    for argv, field in ((["--config", str(config_file)], "unknown option(s) batch_sise"),
                        (["--lora-dropout", "1.5"], "lora_dropout: must be in [0, 1)"),
                        (["--batch-size", "many"], "batch_size")):
        with pytest.raises(SystemExit) as exit_:
            lora.main(argv)
        assert exit_.value.code == 2 and field in capsys.readouterr().err
    with pytest.raises(data.DataError, match="no file for split"):
        full.main(flags(folder, tmp_path, "test/x", **{"train-split": "nope"}))


@needs_dialogsum
def test_same_trainers_run_on_dialogsum_rows(setup):
    _, tmp_path = setup
    argv = flags("dialogsum-local", tmp_path, "test/tiny-dialogsum-lora", steps=3,
                 **{"train-split": "validation", "train-limit": 8, "eval-limit": 6, "max-source-length": 256})
    run = lora.main(argv)
    assert {k: run["dataset"][k] for k in ("id", "split", "n")} == {"id": "dialogsum-local", "split": "test", "n": 6}
    assert run["dataset"]["held_out"] is False and run["dataset"]["train_n"] == 8  # two splits: nothing held out
    assert run["training"]["n"] == 8 and run["metrics"]["rouge1"]["n"] == 6
    assert LocalStore().exists("test/tiny-dialogsum-lora")


def test_one_split_for_both_holds_out_the_share_asked_and_never_trains_on_it(setup):
    """--holdout: comparing recipes on a user's own pairs alone (--train-split and --eval-split the same)."""
    folder, tmp_path = setup
    run = lora.main(flags(folder, tmp_path, "test/tiny-holdout-lora", steps=2,
                          **{"train-split": "train", "eval-split": "train", "holdout": 0.25}))
    assert run["dataset"]["held_out"] is True and (run["dataset"]["train_n"], run["dataset"]["n"]) == (6, 2)
    assert run["training"]["n"] == 6 and "held out 2 of 8 dialogues (25%" in run["dataset"]["note"]
    trained_on = {r["fname"] for r in data.load_dialogues(str(folder), "train")} - {
        json.loads(x)["fname"] for x in (tmp_path / "results" / "outputs" / f"{run['run_id']}.jsonl").read_text()
        .splitlines()}
    assert len(trained_on) == 6  # the two evaluated dialogues are the two left out


def test_interpolate_publishes_the_weights_between_the_trained_and_the_start(setup):
    """WiSE-FT: the same seeded run published with --interpolate 0.25 is 0.25 x its trained weights + 0.75 x the
    start's, and its record says so; on a LoRA adapter the merged update is scaled by the same share."""
    import torch
    from peft import get_peft_model

    from trainers import sft
    from workbench import modeling

    folder, tmp_path = setup
    common = {"max-steps": 10, "save-dtype": "fp32"}
    trained = full.main(flags(folder, tmp_path, "test/tiny-full-1", **common))
    moved = full.main(flags(folder, tmp_path, "test/tiny-full-q", interpolate=0.25, **common))
    assert moved["training"]["interpolate"] == 0.25 and "interpolate" not in trained["training"]
    start, end, between = (modeling.load_model(store.resolve(name), dtype="fp32").state_dict()
                           for name in ("test/tiny-base", "test/tiny-full-1", "test/tiny-full-q"))
    assert any(not torch.equal(start[k], end[k]) for k in start)
    for k in start:
        torch.testing.assert_close(between[k], 0.25 * end[k] + 0.75 * start[k], atol=1e-6, rtol=1e-5)

    model = get_peft_model(modeling.load_model(store.resolve("test/tiny-base"), dtype="fp32"),
                           lora.lora_settings(lora.LoraRecipe()))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    layer = model.base_model.model.encoder.block[0].layer[0].SelfAttention.q
    before = layer.get_delta_weight("default").clone()
    sft.interpolate_to_start(model, store.resolve("test/tiny-base"), 0.25)
    torch.testing.assert_close(layer.get_delta_weight("default"), 0.25 * before)
