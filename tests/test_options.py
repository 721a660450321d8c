"""Trainer options (trainers/options.py): HfArgumentParser over shared option groups. A recipe file and flags combine
with the flags winning and the record naming them; every committed recipe and every recipe's own keys parse; a
mistake is one line naming the field with exit status 2 and no usage block; --help names the command as it is run,
shows each default, and answers without importing transformers' Trainer or trl."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import yaml

from trainers import baseline, evaluate, full, lora, options, pairs, ppo, preference, pretrain, reward
from workbench import paths

RECIPES = {"full": full.FullRecipe, "lora": lora.LoraRecipe, "pretrain": pretrain.PretrainRecipe,
           "ppo": ppo.PpoRecipe, "reward": reward.RewardRecipe, "pairs": pairs.PairsRecipe,
           "preference": preference.PreferenceRecipe, "baseline": baseline.BaselineRecipe,
           "evaluate": evaluate.EvaluateRecipe}
BY_FILE = {**RECIPES, "orpo": preference.PreferenceRecipe}  # recipe file -> its trainer (orpo.yaml: preference)
REQUIRED = {"preference": {"preferences": "votes.jsonl"}}  # a recipe that cannot run without naming its data


def parse_failure(recipe, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        options.parse(recipe, argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "usage" not in err, err
    return err.strip()


@pytest.mark.parametrize("argv, expected", [
    (["--learning-rate", "nan"], "error: learning_rate: expected a finite number, got nan"),
    (["--learning-rate", "fast"], "error: learning_rate: expected a number, got 'fast'"),
    (["--max-steps", "1.5"], "error: max_steps: expected a whole number, got '1.5'"),
    (["--precision", "fp8"], "error: precision: invalid choice: 'fp8'"),
    (["--lora-dropout", "1"], "error: lora_dropout: must be in [0, 1), got 1.0"),
    (["--batch-sise", "4"], "error: unknown option(s): --batch-sise 4"),
    (["--target-modules", ","], "error: target_modules: name at least one module"),
])
def test_a_bad_flag_is_one_line_naming_the_field(argv, expected, capsys):
    assert parse_failure(lora.LoraRecipe, argv, capsys).startswith(expected)


def test_a_bad_recipe_file_is_one_line_naming_the_file_and_the_field(tmp_path, capsys):
    cases = {"batch_sise: 4\n": "unknown option(s) batch_sise (did you mean batch_size?)",
             "max_steps: lots\n": "max_steps: expected a whole number, got 'lots'",
             "model: {a: 1}\n": "model: expected a value",
             "- 1\n": "expected a mapping of option: value, got list",
             "a: [\n": "not valid YAML"}
    for i, (text, words) in enumerate(cases.items()):
        path = tmp_path / f"bad-{i}.yaml"
        path.write_text(text)
        message = parse_failure(lora.LoraRecipe, ["--config", str(path)], capsys)
        assert message.startswith(f"error: {path}: ") and words in message, message
    assert "--config: file not found" in parse_failure(lora.LoraRecipe, ["--config", str(tmp_path / "no.yaml")],
                                                       capsys)


def test_flags_override_the_file_and_the_record_lists_them(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("max_steps: 3\ntarget_modules: [q, v, k]\nfresh: true\neval_limit:\nlearning_rate: 2.0e-3\n")
    config = options.parse(lora.LoraRecipe, ["--config", str(path), "--max-steps", "5", "--no-fresh",
                                             "--target-modules", "q,o"])
    assert (config.max_steps, config.fresh, config.target_modules, config.learning_rate) == (5, False, ["q", "o"],
                                                                                              2e-3)
    assert options.recipe_record(config) == {"recipe": "mine.yaml",
                                             "recipe_overrides": ["fresh", "max_steps", "target_modules"]}
    plain = options.parse(lora.LoraRecipe, ["--max-steps", "5"])
    assert options.recipe_record(plain) == {"recipe": None} and plain.learning_rate == 1e-3  # LoRA's own default
    assert full.FullRecipe().learning_rate == 5e-4  # the decorator changed LoRA's default only


@pytest.mark.parametrize("path", sorted((paths.REPO_ROOT / "configs" / "recipes").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_committed_recipe_parses_with_its_trainer(path):
    values = yaml.safe_load(path.read_text())
    config = options.parse(BY_FILE[path.stem], ["--config", str(path)])
    assert options.recipe_record(config) == {"recipe": f"configs/recipes/{path.name}"}
    assert {k: getattr(config, k) for k in values} == values  # every value as written, none re-typed


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_option_of_every_recipe_is_a_valid_recipe_key(name, tmp_path):
    """Each recipe's defaults written as a recipe file read back equal: any key of any trainer (e.g. the pairs and
    ORPO recipes still to be written) is accepted in a file."""
    recipe = RECIPES[name]
    defaults = recipe(**REQUIRED.get(name, {}))
    values = {k: v for k, v in dataclasses.asdict(defaults).items() if v is not None}
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(values))
    assert options.parse(recipe, ["--config", str(path)]) == defaults


def test_recipes_built_in_code_are_checked_too():
    with pytest.raises(options.ConfigError, match="precision: expected one of auto, fp32, bf16, got 'fp8'"):
        full.FullRecipe(precision="fp8")
    with pytest.raises(options.ConfigError, match="init_kl_coef: expected a finite number"):
        ppo.PpoRecipe(init_kl_coef=float("inf"))
    with pytest.raises(options.ConfigError, match="output: .*not a valid repo id"):
        reward.RewardRecipe(output="no slash")


HELP_PROBE = """
import importlib, io, json, sys, contextlib
out = {}
for name in sys.argv[1:]:
    module = importlib.import_module(f"trainers.{name}")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            module.main(["--help"])
        except SystemExit as exit_:
            assert exit_.code == 0
    out[name] = text.getvalue()
heavy = sorted(m for m in sys.modules if m in ("trl", "transformers.trainer", "peft", "datasets"))
print(json.dumps({"help": out, "heavy": heavy}))
"""


def test_help_names_the_command_shows_defaults_and_imports_no_trainer():
    done = subprocess.run([sys.executable, "-c", HELP_PROBE, *RECIPES], capture_output=True, text=True, timeout=300,
                          cwd=paths.REPO_ROOT, env={"COLUMNS": "200", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                                                    "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["heavy"] == []  # transformers' Trainer, trl, peft and datasets load after parsing
    for name, text in found["help"].items():
        assert text.startswith(f"usage: python -m trainers.{name} "), text[:200]
        assert "--config FILE" in text and "--max_steps" not in text
    assert "(default: profanity-check:one_minus_p)" in found["help"]["ppo"]
    assert "(default: ['q', 'v'])" in found["help"]["lora"] and "(default: 0.001)" in found["help"]["lora"]
