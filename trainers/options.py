"""Trainer options: small shared dataclasses that recipes compose, parsed by transformers' `HfArgumentParser`.

A recipe is a dataclass that inherits the option groups it uses (data, evaluation, publishing, checkpoints,
optimisation) and adds its own fields; `@defaults(...)` gives an inherited field the recipe's own default. Every
field is a `--flag` whose help is the field's help text, with its default shown. `parse` reads `--config FILE` (YAML,
one key per field) as flags written before the command line's, so argparse checks both alike and the command line
wins. Each group checks its values in `__post_init__`. A mistake is reported as one line naming the field, exit
status 2, before anything heavy is imported or any model loads.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import math
import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from transformers.hf_argparser import HfArg, HfArgumentParser

T = TypeVar("T")
Precision = Literal["auto", "fp32", "bf16"]
SaveDtype = Literal["bf16", "fp16", "fp32"]


class ConfigError(ValueError):
    """A configuration problem, naming the field (and file) that is wrong."""


def arg(default: Any, help: str | None, *, positive: bool = False, within: str | None = None) -> Any:  # noqa: A002
    """A dataclass field with its help text (transformers.HfArg) and its checks, which Options.__post_init__ runs:
    `positive` (> 0) or `within` an interval written as in mathematics, e.g. "[0, 1)" or "[2, inf)". None passes
    both (an unset optional option). A list default is copied for each instance."""
    checks = {"positive": positive, "within": within}
    return _field(default, {"help": help, "checks": {k: v for k, v in checks.items() if v}})


def _field(default: Any, metadata: dict) -> Any:
    if isinstance(default, list):
        return HfArg(default_factory=lambda: list(default), metadata=dict(metadata))
    return HfArg(default=default, metadata=dict(metadata))


def defaults(**values: Any):
    """Class decorator (under @dataclass): the recipe's own defaults for inherited fields, keeping their help and
    checks."""
    def apply(cls: type) -> type:
        inherited = {name: f for base in reversed(cls.__mro__)
                     for name, f in base.__dict__.get("__dataclass_fields__", {}).items()}
        hints = typing.get_type_hints(cls)
        if "__annotations__" not in cls.__dict__:
            cls.__annotations__ = {}
        for name, value in values.items():
            cls.__annotations__[name] = hints[name]
            setattr(cls, name, _field(value, inherited[name].metadata))
        return cls
    return apply


# ------------------------------------------------------------------------------------------------ checks


def check_value(name: str, value: Any, checks: dict) -> None:
    """A field's declared checks (see `arg`)."""
    if checks.get("positive") and value <= 0:
        raise ConfigError(f"{name}: must be positive, got {value}")
    if checks.get("within"):
        check_within(name, value, checks["within"])


def check_within(name: str, value: float, interval: str) -> None:
    """`value` in `interval`, e.g. "(0, 1]": a square bracket includes its end, a parenthesis does not."""
    opening, low, high, closing = re.fullmatch(r"([\[(])(.+), (.+)([\])])", interval).groups()
    if value < float(low) or value > float(high) or (opening == "(" and value == float(low)) or \
            (closing == ")" and value == float(high)):
        raise ConfigError(f"{name}: must be in {interval}, got {value}")


def check_repo_id(name: str, value: str | None) -> None:
    """A store name / Hub repo id (namespace/name) for option `name`; None passes."""
    from workbench.store import StoreError, validate_repo_id

    if value is None:
        return
    try:
        validate_repo_id(value)
    except StoreError as err:
        raise ConfigError(f"{name}: {err}") from None


def check_scorer(name: str, spec: str) -> None:
    """A toxicity scorer spec: profanity-check or hf:<model>."""
    if spec != "profanity-check" and not (spec.startswith("hf:") and len(spec) > 3):
        raise ConfigError(f"{name}: expected profanity-check or hf:<model id>, got {spec!r}")


# ------------------------------------------------------------------------------------------------ option groups


@dataclasses.dataclass
class Options:
    """The root of every group: numbers must be finite and a Literal field one of its choices (argparse checks the
    command line; this also covers recipes built in code)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name}: expected a finite number, got {value}")
            choices = _choices(hints[f.name])
            if choices and value not in choices:
                raise ConfigError(f"{f.name}: expected one of {', '.join(map(str, choices))}, got {value!r}")
            check_value(f.name, value, f.metadata.get("checks", {}))


def _choices(hint) -> tuple:
    """The allowed values of a `Literal[...]` (or `Literal[...] | None`) annotation, else ()."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return next((typing.get_args(a) for a in typing.get_args(hint) if typing.get_origin(a) is Literal), ())


@dataclasses.dataclass
class Scoring(Options):
    toxicity: str = arg("profanity-check", "toxicity scorer: profanity-check (offline) or hf:<model id>")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_scorer("toxicity", self.toxicity)


@dataclasses.dataclass
class Evaluation(Scoring):
    """How the finished model is evaluated: greedy summaries of the evaluation split, scored."""

    eval_batch_size: int = arg(32, "generation batch size for the evaluation", positive=True)
    max_new_tokens: int = arg(64, "summary length limit (tokens) at evaluation", positive=True)


@dataclasses.dataclass
class Dataset(Options):
    dataset: str = arg("demo", "data: demo (generated, offline), dialogsum-local (the shared DialogSum copy), a "
                       "folder or file, or a Hub id (e.g. knkarthick/dialogsum)")


@dataclasses.dataclass
class EvalData(Dataset):
    """The split a trained model is evaluated on, whole unless limited (the Dashboard compares whole splits)."""

    eval_split: str = arg("test", "split to evaluate on")
    eval_limit: int | None = arg(None, "evaluate only the first N rows (None = the whole split)", positive=True)


@dataclasses.dataclass
class TrainData(EvalData):
    """The split a recipe trains on, beside the evaluation split (data.load_train_eval)."""

    train_split: str = arg("train", "split to train on; when it names the same data as --eval-split (e.g. a single "
                           "file), a seeded share of it (--holdout) is held out for evaluation and not trained on")
    train_limit: int | None = arg(None, "train on only the first N rows (None = all; for quick runs)", positive=True)
    holdout: float = arg(0.1, "when --train-split and --eval-split name the same data, the share of its dialogues "
                         "held out (seeded) for evaluation and never trained on: e.g. --train-split dev --eval-split "
                         "dev --holdout 0.2 compares recipes on a fifth of your own pairs. 0 = evaluate on the "
                         "training dialogues (the record says so)", within="[0, 1)")


@dataclasses.dataclass
class SplitData(Dataset):
    """One split read as it is (evaluation, baselines, sampling pairs)."""

    split: str = arg("test", "split to read")
    limit: int | None = arg(None, "use only the first N rows (None = the whole split)", positive=True)


@dataclasses.dataclass
class Policy(Options):
    """The model a recipe tunes further or samples from."""

    policy: str = arg("demo/flan-t5-demo-lora", "the policy: a LoRA adapter (trainers.pairs also takes a full "
                      "model), as a store name, Hub id or folder")
    base: str | None = arg(None, "its base model (None = the one named in the adapter config)")


@dataclasses.dataclass
class Publishing(Options):
    output: str | None = arg(None, "store name to publish under (namespace/name; None = a new local/... name "
                             "made of the start model, the data and the method, never a served demo model)")
    push_to_hub: str | None = arg(None, "also push to this Hub repo (token from HF_TOKEN or `hf auth login`; "
                                  "never printed)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_repo_id("output", self.output)
        check_repo_id("push_to_hub", self.push_to_hub)


@dataclasses.dataclass
class Checkpoints(Options):
    checkpoint_dir: str | None = arg(None, "checkpoint folder (None = runs/<method>/<output>); the same command "
                                     "finds it again and resumes")
    fresh: bool = arg(False, "ignore existing checkpoints and start over")


@dataclasses.dataclass
class Optimization(Options):
    max_steps: int = arg(1000, "optimizer steps", within="[0, inf)")
    batch_size: int = arg(16, "examples per optimizer step on each device", positive=True)
    learning_rate: float = arg(5e-4, "peak learning rate", within="(0, 1)")
    seed: int = arg(42, "random seed (data order, dropout, initialisation)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps == 0 and getattr(self, "epochs", 0) <= 0:
            raise ConfigError("max_steps: must be positive (0 = train for --epochs, where a recipe has them)")


@dataclasses.dataclass
class TrainerOptions(Optimization):
    """The options of a recipe that trains with transformers' Trainer (or a trl trainer built on it); see
    common.trainer_arguments for how they become its TrainingArguments."""

    warmup_ratio: float = arg(0.05, "share of the steps for linear warm-up", within="[0, 1)")
    precision: Precision = arg("auto", "training precision: auto (bf16 autocast where the hardware has it), fp32 "
                               "or bf16")
    logging_steps: int = arg(25, "log the loss every N steps", positive=True)
    save_steps: int = arg(250, "checkpoint every N steps (a restarted command resumes from the last one)",
                          positive=True)


@dataclasses.dataclass
class Weights(Options):
    save_dtype: SaveDtype = arg("bf16", "dtype of the published weights (the evaluation scores these weights)")


@dataclasses.dataclass
class Tracking(Options):
    report_to: str = arg("none", "experiment tracker for the training curves: none, trackio (local, offline; "
                         "`trackio show --project dialogue-workbench`), tensorboard or wandb, if installed")

    def __post_init__(self) -> None:
        super().__post_init__()
        from trainers import tracking

        tracking.check_report_to("report_to", self.report_to)


# ------------------------------------------------------------------------------------------------ parsing


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default."""


class RecipeParser(HfArgumentParser):
    """HfArgumentParser for one recipe dataclass, with `--config FILE`, `--no-<flag>` for every switch, and one-line
    errors: `error: <field>: <what is wrong>` and exit status 2, without the usage block."""

    @staticmethod
    def _parse_dataclass_field(parser, field):
        """The field as HfArgumentParser reads it, without the checks (its metadata goes to argparse)."""
        shown = copy.copy(field)
        shown.metadata = {k: v for k, v in field.metadata.items() if k != "checks"}
        HfArgumentParser._parse_dataclass_field(parser, shown)

    def __init__(self, recipe: type, description: str | None = None):
        super().__init__(prog=program(recipe), description=description, formatter_class=HelpFormatter)
        self.recipe = recipe
        self.where = ""  # the file whose values are being checked, for error messages
        self.add_argument("--config", metavar="FILE", help="YAML file of options (the keys are the flags' names with "
                          "underscores); command-line flags override it, and the run record lists them")
        self.dataclass_types = [recipe]
        self._add_dataclass_arguments(recipe)
        self._dashes_only()
        for action in self._actions:  # a recipe's own words for inherited fields, e.g. workbench.ppo.PPOConfig's
            action.help = getattr(recipe, "help_texts", {}).get(action.dest, action.help)
            if action.option_strings[0].startswith("--no-"):
                action.help = argparse.SUPPRESS  # `--flag false` says the same, and --help lists `--flag`

    def _dashes_only(self) -> None:
        """HfArgumentParser accepts --max_steps and --max-steps; the trainers' spelling is the second."""
        for action in self._actions:
            for option in [o for o in action.option_strings if "_" in o and len(action.option_strings) > 1]:
                action.option_strings.remove(option)
                del self._option_string_actions[option]
        for f in dataclasses.fields(self.recipe):
            flag = "--no-" + f.name.replace("_", "-")
            if isinstance(f.default, bool) and flag not in self._option_string_actions:
                self.add_argument(flag, dest=f.name, action="store_false", default=f.default, help=argparse.SUPPRESS)

    def error(self, message: str) -> typing.NoReturn:
        print(f"error: {self.where}{_field_message(self, message)}", file=sys.stderr)
        raise SystemExit(2)

    def parse(self, argv: list[str]):
        config, argv = _config_flag(self, argv)
        file_args = self.file_arguments(config) if config else []
        self.parse_args(argv)  # the command line's own mistakes (unknown flags, wrong types), and --help
        try:
            recipe = self.parse_args_into_dataclasses(file_args + argv, look_for_args_file=False)[0]
        except ConfigError as err:
            self.error(str(err))
        recipe._recipe = (recipe_name(config), self.given(argv)) if config else None  # see recipe_record
        return recipe

    def file_arguments(self, path: str) -> list[str]:
        """A YAML file's options as `--flag=value` arguments (checked here, named by the file when wrong)."""
        values = load_yaml(self, path)
        fields = {f.name: f for f in dataclasses.fields(self.recipe)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            close = [m for key in unknown for m in difflib.get_close_matches(key, list(fields), n=1)]
            self.error(f"unknown option(s) {', '.join(unknown)}" + (f" (did you mean {', '.join(close)}?)" if close
                                                                    else "; see --help for the valid ones"))
        args = [_flag_argument(self, name, value) for name, value in values.items()
                if not (value is None and fields[name].default is None)]
        self.parse_known_args(args)
        self.where = ""
        return args

    def given(self, argv: list[str]) -> list[str]:
        """The fields that `argv` sets (the record's recipe_overrides): a parse in which nothing has a default."""
        saved = {action: action.default for action in self._actions}
        try:
            for action in self._actions:
                action.default = argparse.SUPPRESS
            namespace, _ = self.parse_known_args(argv)
        finally:
            for action, default in saved.items():
                action.default = default
        return sorted(vars(namespace))


def _config_flag(parser: RecipeParser, argv: list[str]) -> tuple[str | None, list[str]]:
    """(--config FILE or None, the other arguments)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.error = parser.error  # type: ignore[method-assign]
    known, rest = pre.parse_known_args(argv)
    return known.config, rest


def _flag_argument(parser: RecipeParser, name: str, value: Any) -> str:
    """`--name=value` for one YAML value; a list becomes comma-separated (list fields split on commas)."""
    if value is None or isinstance(value, dict):
        parser.error(f"{name}: expected a value, got {value!r}")
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"--{name.replace('_', '-')}={value}"


def _field_message(parser: argparse.ArgumentParser, message: str) -> str:
    """argparse's "argument --max-steps: invalid int value: 'lots'" as "max_steps: expected a whole number, got
    'lots'"; other messages as they are."""
    found = re.match(r"argument ([^:/]+)(?:/[^:]+)?: (.*)", message)
    if not found or found.group(1) not in parser._option_string_actions:
        return message.replace("unrecognized arguments", "unknown option(s)")
    name = parser._option_string_actions[found.group(1)].dest
    text = re.sub(r"invalid (int|float) value: (.*)",
                  lambda m: f"expected {'a whole number' if m.group(1) == 'int' else 'a number'}, got {m.group(2)}",
                  found.group(2))
    return f"{name}: {text}"


def load_yaml(parser: RecipeParser, path: str) -> dict:
    if not Path(path).is_file():
        parser.error(f"--config: file not found: {path}")
    parser.where = f"{path}: "
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        parser.error(f"not valid YAML: {' '.join(str(err).split())}")
    if not isinstance(data, dict):
        parser.error(f"expected a mapping of option: value, got {type(data).__name__}")
    return data


def program(recipe: type) -> str:
    """The command as it is run: `python -m trainers.lora` (the module is __main__ when run with -m)."""
    module = recipe.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec else Path(sys.argv[0]).stem
    return f"python -m {module}"


def parse(recipe: type[T], argv: list[str] | None = None, description: str | None = None) -> T:
    """The recipe's options from `--config FILE` and the command line (sys.argv when `argv` is None)."""
    return RecipeParser(recipe, description).parse(sys.argv[1:] if argv is None else list(argv))


def recipe_name(path: str | Path) -> str:
    """How a record names a --config file: its path inside the repository (e.g. configs/recipes/lora.yaml), which
    reproduces the run from a checkout; a file elsewhere by its name only (no machine paths in records)."""
    from workbench.paths import REPO_ROOT

    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return resolved.name


def recipe_record(options) -> dict:
    """The training record's part that names the recipe: {"recipe": file or None} and, when command-line flags
    overrode the file, {"recipe_overrides": [option, ...]} so that the record never claims the file alone ran."""
    recipe = getattr(options, "_recipe", None)
    if recipe is None:
        return {"recipe": None}
    path, overrides = recipe
    return {"recipe": path, **({"recipe_overrides": overrides} if overrides else {})}
