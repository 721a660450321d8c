"""Load DialogSum-format data from the demo corpus, local files or a Hugging Face Hub dataset id.

Every source yields the same plain rows::

    {"fname": str, "dialogue": str, "summary": str, "references": [str, ...], "topic": str}

`summary` is the first reference; `references` holds all of them (DialogSum's test split has summary1..3).
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench import paths

DEMO = "demo"
SHARED = "dialogsum-local"
SPLIT_ALIASES = {"dev": "validation", "val": "validation", "valid": "validation"}
FILE_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
MAX_REFERENCES = 5


class DataError(ValueError):
    """Malformed or missing data; the message names the file, row and field."""


def _split_name(split: str) -> str:
    return SPLIT_ALIASES.get(split, split)


def _find_split_file(folder: Path, split: str) -> Path:
    names = {split, *(alias for alias, target in SPLIT_ALIASES.items() if target == split)}
    for path in sorted(folder.iterdir()):
        stem = path.name[: -len(path.suffix)] if path.suffix else path.name
        if path.suffix in FILE_SUFFIXES and (stem in names or stem.rsplit(".", 1)[-1] in names):
            return path
    available = sorted(p.name for p in folder.iterdir() if p.suffix in FILE_SUFFIXES)
    raise DataError(f"{folder}: no file for split {split!r} (found: {', '.join(available) or 'none'})")


def resolve_source(source: str, split: str) -> Path | str:
    """A local file for `source`/`split`, or the source itself when it names a Hub dataset."""
    split = _split_name(split)
    if source == DEMO:
        return _find_split_file(paths.DEMO_DATA_DIR, split)
    if source == SHARED:
        if not paths.SHARED_DIALOGSUM.is_dir():
            raise DataError(f"{paths.SHARED_DIALOGSUM}: DialogSum dev/test folder not found")
        return _find_split_file(paths.SHARED_DIALOGSUM, split)
    path = Path(source).expanduser()
    if path.is_dir():
        return _find_split_file(path, split)
    if path.is_file():
        return path
    if path.suffix in FILE_SUFFIXES or os.sep in source and not _looks_like_hub_id(source):
        raise DataError(f"{source}: file not found")
    return source


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def normalize_row(row: dict, where: str) -> dict:
    """Map a DialogSum-style record to the workbench row, or raise DataError naming the bad field."""
    dialogue = row.get("dialogue")
    if not isinstance(dialogue, str) or not dialogue.strip():
        raise DataError(f"{where}: field 'dialogue' is missing or empty")
    references = []
    for key in ("summary", *(f"summary{i}" for i in range(1, MAX_REFERENCES + 1))):
        value = row.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(f"{where}: field {key!r} must be text, got {type(value).__name__}")
        if value.strip() and value.strip() not in references:
            references.append(value.strip())
    if not references:
        raise DataError(f"{where}: no reference summary (expected 'summary' or 'summary1'..)")
    topic = row.get("topic", row.get("topic1")) or ""
    return {
        "fname": str(row.get("fname") or row.get("id") or ""),
        "dialogue": dialogue.strip(),
        "summary": references[0],
        "references": references,
        "topic": str(topic),
    }


def load_dialogues(source: str = DEMO, split: str = "test", *, limit: int | None = None) -> list[dict]:
    """Rows of `split` from `source`: "demo", "dialogsum-local", a file/folder (jsonl, csv, parquet) or a Hub id.

    Raises DataError for a missing file, an unknown split, an empty split or a malformed row.
    """
    import datasets

    datasets.disable_progress_bars()
    located = resolve_source(source, split)
    if isinstance(located, Path):
        builder = FILE_SUFFIXES.get(located.suffix)
        if builder is None:
            raise DataError(f"{located}: unsupported file type (use .jsonl, .csv or .parquet)")
        if located.stat().st_size == 0:
            raise DataError(f"{located}: the split is empty")
        try:
            table = datasets.load_dataset(builder, data_files=str(located), split="train")
        except Exception as err:  # datasets wraps parse errors in several types
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise DataError(f"{located}: could not be parsed as {builder}: {reason}") from err
        origin = str(located)
    else:
        try:
            table = datasets.load_dataset(located, split=_split_name(split))
        except Exception as err:
            raise DataError(f"{located}: could not load split {split!r} from the Hub: {err}") from err
        origin = f"{located}[{split}]"
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    rows = [normalize_row(row, f"{origin} row {i}") for i, row in enumerate(table)]
    if not rows:
        raise DataError(f"{origin}: the split is empty")
    return rows
