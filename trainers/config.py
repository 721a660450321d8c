"""Trainer configuration: a dataclass per recipe, filled from defaults < YAML file (--config) < CLI flags.

Every field becomes a `--flag` whose help text is the field's `help` metadata. Unknown YAML keys, wrong types and
impossible values are reported with the field's name before any heavy work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, naming the field (and file) that is wrong."""


def field(default: Any, help: str, **kwargs) -> Any:  # noqa: A002 - mirrors argparse
    metadata = {"help": help, **kwargs}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _base_type(tp) -> tuple[type, bool]:
    """(underlying type, optional?) for annotations like `int`, `str | None`, `float | None`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _coerce(name: str, value: Any, tp, where: str) -> Any:
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}{name}: must not be empty")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
            return value.lower() in {"true", "1", "yes"}
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif base is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
    elif base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif typing.get_origin(base) is list or base is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    else:
        return value
    kind = {"float": "a finite number", "int": "a whole number"}.get(getattr(base, "__name__", ""),
                                                                      getattr(base, "__name__", str(base)))
    raise ConfigError(f"{where}{name}: expected {kind}, got {value!r}")


def check_repo_id(name: str, value: str) -> None:
    """A store name / Hub repo id (namespace/name) for option `name`."""
    from workbench.store import StoreError, validate_repo_id

    try:
        validate_repo_id(value)
    except StoreError as err:
        raise ConfigError(f"{name}: {err}") from None


def check_scorer(name: str, spec: str) -> None:
    """A toxicity scorer spec: profanity-check or hf:<model>."""
    if spec != "profanity-check" and not (spec.startswith("hf:") and len(spec) > 3):
        raise ConfigError(f"{name}: expected profanity-check or hf:<model id>, got {spec!r}")


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    return data


def build(cls: type[T], values: dict, where: str = "") -> T:
    """Instantiate `cls` from a plain dict, checking names and types; `where` prefixes error messages."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}unknown option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(known))}")
    coerced = {k: _coerce(k, v, hints[k], where) for k, v in values.items()}
    config = cls(**coerced)
    check = getattr(config, "validate", None)
    if check:
        check()
    return config


def parse(cls: type[T], argv: list[str] | None, description: str, epilog: str = "") -> T:
    """Parse `--config FILE` and one `--flag` per field into an instance of `cls`."""
    parser = argparse.ArgumentParser(description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="YAML file of options; command-line flags override it")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        base, _ = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if "default" not in help_text:
            help_text += f" (default: {default})"
        if base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)
    args = vars(parser.parse_args(argv))
    recipe = args.pop("config")
    values = load_yaml(recipe) if recipe else {}
    where = "config: " if values else ""
    flags = {k: v for k, v in args.items() if v is not None}
    values.update(flags)
    try:
        config = build(cls, values, where)
    except ConfigError as err:
        parser.error(str(err))
        raise  # unreachable: parser.error exits
    config._recipe = (recipe_name(recipe), sorted(flags)) if recipe else None  # not a field: see recipe_record
    return config


def recipe_name(path: str | Path) -> str:
    """How a record names a --config file: its path inside the repository (e.g. configs/recipes/lora.yaml), which
    reproduces the run from a checkout; a file elsewhere by its name only (no machine paths in records)."""
    from workbench.paths import REPO_ROOT

    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return resolved.name


def recipe_record(config) -> dict:
    """The training record's part that names the recipe: {"recipe": file or None} and, when command-line flags
    overrode the file, {"recipe_overrides": [option, ...]} so that the record never claims the file alone ran."""
    recipe = getattr(config, "_recipe", None)
    if recipe is None:
        return {"recipe": None}
    path, overrides = recipe
    return {"recipe": path, **({"recipe_overrides": overrides} if overrides else {})}


def as_dict(config) -> dict:
    return dataclasses.asdict(config)
