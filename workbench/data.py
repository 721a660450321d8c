"""Load DialogSum-format data from the demo corpus, local files or a Hugging Face Hub dataset id.

Every source yields the same plain rows, one per dialogue::

    {"fname": str, "dialogue": str, "summary": str, "references": [str, ...], "topic": str}

`summary` is the first reference; `references` holds all of them. DialogSum's own test file has summary1..3 in one
record, while the Hub copies (`knkarthick/dialogsum`) repeat each test dialogue on three rows with one `summary` each:
rows that share a dialogue are grouped into one example, so n counts dialogues and ROUGE takes the best reference.

Where a source is decided up front, so mistakes fail in a second: an existing path is local, "demo" and
"dialogsum-local" are the bundled sets, any other name without a slash is an error that lists what exists, and only
"owner/name" goes to the Hub, after one quick reachability probe (or straight to the cache under HF_HUB_OFFLINE).
Row numbers in messages count from 1: "line N" for JSON lines files (as editors count), "row N" elsewhere.
"""

from __future__ import annotations

import difflib
import json
import os
import random
import re
import threading
from pathlib import Path

from workbench import paths

DEMO = "demo"
SHARED = "dialogsum-local"
SPLIT_ALIASES = {"dev": "validation", "val": "validation", "valid": "validation"}
FILE_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
MAX_REFERENCES = 5
HUB_PROBE_TIMEOUT_S = 2.0  # the HTTP client's connect/read timeout
HUB_PROBE_DEADLINE_S = 3.0  # the whole probe, name lookup included
OFFLINE_CHOICES = f"{DEMO}, {SHARED} (if present) or a local .jsonl/.csv/.parquet file or folder"


class DataError(ValueError):
    """Malformed or missing data; the message names the file, row (counting from 1) and field."""


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


def _shared_split_file(split: str) -> Path:
    """DialogSum-local holds dev and test only; asking it for train says how to train on it."""
    if not paths.SHARED_DIALOGSUM.is_dir():
        raise DataError(f"{SHARED}: the DialogSum dev/test folder ({paths.SHARED_DIALOGSUM.name}) was not found "
                        "(set WORKBENCH_DIALOGSUM to its location)")
    try:
        return _find_split_file(paths.SHARED_DIALOGSUM, split)
    except DataError:
        if split == "train":
            raise DataError(f"{SHARED} has no train split (only dev and test): train on dev with "
                            "--train-split dev and evaluate on test") from None
        raise


def _local_suggestions(source: str) -> str:
    """What the user may have meant: the bundled sets and local entries whose names are close to `source`."""
    choices = [DEMO] + ([SHARED] if paths.SHARED_DIALOGSUM.is_dir() else [])
    path = Path(source).expanduser()
    parent = path.parent if str(path.parent) not in ("", ".") else Path.cwd()
    try:
        entries = [p.name for p in parent.iterdir() if p.is_dir() or p.suffix in FILE_SUFFIXES]
    except OSError:
        entries = []
    near = difflib.get_close_matches(path.name, entries, n=3, cutoff=0.6)
    prefix = "" if str(path.parent) in ("", ".") else f"{path.parent}{os.sep}"
    return ", ".join(choices + [prefix + name for name in near])


def resolve_source(source: str, split: str) -> Path | str:
    """A local file for `source`/`split`, or the source itself when it names a Hub dataset ("owner/name").

    Decided without the network: a name without a slash that is neither a bundled set nor an existing path is an
    error here, never a Hub lookup (which would take a minute of retries to fail).
    """
    split = _split_name(split)
    if source == DEMO:
        return _find_split_file(paths.DEMO_DATA_DIR, split)
    if source == SHARED:
        return _shared_split_file(split)
    path = Path(source).expanduser()
    if path.is_dir():
        return _find_split_file(path, split)
    if path.is_file():
        return path
    if path.suffix in FILE_SUFFIXES or source.startswith((".", "/", "~")) or "\\" in source:
        raise DataError(f"{source}: file not found; available: {_local_suggestions(source)}")
    if not _looks_like_hub_id(source):
        raise DataError(f"{source}: no such local file or folder, and not a Hub dataset id (those look like "
                        f"owner/name); available: {_local_suggestions(source)}")
    return source


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~")) and "\\" not in source


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


_NUMBERED_ID = re.compile(r"^(.+)_\d+$")


def _example_keys(rows: list[dict]) -> list[str]:
    """The id tying each row to its example: the row's id, or its stem when ids count references.

    The Hub copies name the three rows of a test dialogue "test_0_1", "test_0_2", "test_0_3" (many stems, each
    repeated); DialogSum's own files name examples "test_0", "test_1" (one stem). Two examples that happen to share a
    dialogue text under different ids (DialogSum test_173 and test_337) stay two. Numeric ids are row numbers.
    """
    ids = ["" if r["fname"].isdigit() else r["fname"] for r in rows]
    named = [i for i in ids if i]
    matches = [_NUMBERED_ID.match(i) for i in named]
    stems = {m.group(1) for m in matches if m}
    if named and all(matches) and 1 < len(stems) < len(named):
        return [_NUMBERED_ID.match(i).group(1) if i else "" for i in ids]
    return ids


def group_by_dialogue(rows: list[dict]) -> list[dict]:
    """One example per dialogue (first occurrence order), its references merged without duplicates.

    Rows group when they share the dialogue text and their example id (see `_example_keys`), so the Hub layout of
    one summary per row loads as one example with three references, and n counts dialogues.
    """
    groups: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for key, row in zip(_example_keys(rows), rows):
        groups.setdefault((" ".join(row["dialogue"].split()), key), []).append((key, row))
    out = []
    for members in groups.values():
        key, first = members[0]
        references = list(dict.fromkeys(ref for _, m in members for ref in m["references"]))
        topic = next((m["topic"] for _, m in members if m["topic"]), "")
        out.append({**first, "fname": key or first["fname"], "summary": references[0], "references": references,
                    "topic": topic})
    return out


def _read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON lines file; a bad line is reported by its 1-based number and the parser's reason."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
            rows.append(normalize_row(record, f"{path} line {number}"))
    return rows


def _read_table(path: Path) -> list[dict]:
    """Rows of a .json, .csv or .parquet file through `datasets`; rows are numbered from 1 (CSV: after the header)."""
    import datasets

    builder = FILE_SUFFIXES[path.suffix]
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:  # datasets wraps parse errors in several types
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise DataError(f"{path}: could not be parsed as {builder}: {reason}") from err
    unit = "row {} (data rows count from 1, header not counted)" if builder == "csv" else "row {}"
    return [normalize_row(row, f"{path} {unit.format(i)}") for i, row in enumerate(table, start=1)]


def _load_local(path: Path) -> list[dict]:
    if path.suffix not in FILE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type (use .jsonl, .csv or .parquet)")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the split is empty")
    return _read_jsonl(path) if path.suffix == ".jsonl" else _read_table(path)


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE) asks for no network."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_DATASETS_OFFLINE")
    return constants.is_offline_mode() or (flag is not None and flag.strip().upper() in {"1", "ON", "YES", "TRUE"})


def _probe_hub(repo_id: str, endpoint: str) -> Exception | None:
    """The error of one dataset-info request, or None when it succeeded. Runs in a daemon thread with a deadline,
    because a name lookup that hangs (a dead DNS server) is not covered by the HTTP client's timeout."""
    from huggingface_hub import HfApi

    outcome: dict[str, Exception | None] = {}

    def call() -> None:
        try:
            HfApi(endpoint=endpoint).dataset_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S, expand=["sha"])
            outcome["error"] = None
        except Exception as err:  # reported by the caller
            outcome["error"] = err

    worker = threading.Thread(target=call, name="hub-probe", daemon=True)
    worker.start()
    worker.join(HUB_PROBE_DEADLINE_S)
    return outcome.get("error", TimeoutError(f"no answer within {HUB_PROBE_DEADLINE_S:.0f} s"))


def check_hub_dataset(repo_id: str) -> None:
    """One request with a short deadline, so an unreachable Hub or a wrong id fails in seconds, not after retries."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    endpoint = constants.ENDPOINT
    err = _probe_hub(repo_id, endpoint)
    if err is None:
        return
    if isinstance(err, GatedRepoError):
        raise DataError(f"{repo_id}: this Hub dataset is gated; accept its terms on the Hub and log in "
                        "(hf auth login)")
    if isinstance(err, RepositoryNotFoundError):
        raise DataError(f"{repo_id}: no such Hub dataset (or it is private), and no local file or folder by that "
                        f"name; available: {_local_suggestions(repo_id)}")
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        advice = "log in again (hf auth login)" if status == 401 else "try again later"
        raise DataError(f"{repo_id}: the Hub ({endpoint}) answered HTTP {status}; {advice}, or use "
                        f"{OFFLINE_CHOICES}")
    # connection refused, failed name lookup, timeout, proxy error: the Hub cannot be reached
    raise DataError(f"{repo_id}: the Hugging Face Hub ({endpoint}) is unreachable ({type(err).__name__}); "
                    f"offline, use {OFFLINE_CHOICES}, or set HF_HUB_OFFLINE=1 to use a copy already in the "
                    "datasets cache")


def _load_hub(repo_id: str, split: str) -> list[dict]:
    import datasets

    offline = hub_offline()
    if not offline:
        check_hub_dataset(repo_id)
    try:
        table = datasets.load_dataset(repo_id, split=_split_name(split))
    except Exception as err:
        if offline:
            raise DataError(f"{repo_id}: not in the local datasets cache and the Hub is off (HF_HUB_OFFLINE is set); "
                            f"offline, use {OFFLINE_CHOICES}") from None
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise DataError(f"{repo_id}: could not load split {split!r} from the Hub: {reason}") from err
    return [normalize_row(row, f"{repo_id}[{split}] row {i}") for i, row in enumerate(table, start=1)]


def load_dialogues(source: str = DEMO, split: str = "test", *, limit: int | None = None) -> list[dict]:
    """Examples of `split` from `source`: "demo", "dialogsum-local", a file/folder (jsonl, csv, parquet) or a Hub id.

    One example per dialogue (rows repeating a dialogue are grouped); `limit` counts dialogues.
    Raises DataError for a missing file, an unknown split, an empty split, a malformed row or an unreachable Hub.
    """
    import datasets

    datasets.disable_progress_bars()
    located = resolve_source(source, split)
    if isinstance(located, Path):
        rows, origin = _load_local(located), str(located)
    else:
        rows, origin = _load_hub(located, split), f"{located}[{split}]"
    rows = group_by_dialogue(rows)
    if limit is not None:
        rows = rows[: max(limit, 0)]
    if not rows:
        raise DataError(f"{origin}: the split is empty")
    return rows


def _same_source(source: str, train_split: str, eval_split: str) -> bool:
    """Whether the two splits name the same data (a single file serves every split name)."""
    first, second = resolve_source(source, train_split), resolve_source(source, eval_split)
    if isinstance(first, Path) and isinstance(second, Path):
        return first.resolve() == second.resolve()
    return first == second and _split_name(train_split) == _split_name(eval_split)


def load_train_eval(source: str, train_split: str, eval_split: str, *, train_limit: int | None = None,
                    eval_limit: int | None = None, holdout: float = 0.1, seed: int = 0,
                    ) -> tuple[list[dict], list[dict], dict]:
    """Training and evaluation examples, never scoring on training dialogues without saying so.

    When both splits resolve to the same data (e.g. one .jsonl as --dataset), a seeded `holdout` share of the
    dialogues is held out for evaluation and training uses the rest; limits apply after the hold-out.
    split_info = {"train": {"split", "n"}, "eval": {"split", "n"}, "held_out", "holdout_seed", "note"}.
    """
    if not 0 <= holdout < 1:
        raise DataError(f"holdout: must be in [0, 1), got {holdout}")
    if not _same_source(source, train_split, eval_split):
        train = load_dialogues(source, train_split, limit=train_limit)
        evaluation = load_dialogues(source, eval_split, limit=eval_limit)
        shared = len({r["dialogue"] for r in train} & {r["dialogue"] for r in evaluation})
        note = f"train on {source} [{train_split}], evaluate on {source} [{eval_split}]"
        if shared:
            note += f"; {shared} evaluation dialogue(s) also appear in the training rows"
        return train, evaluation, _split_info(train_split, train, eval_split, evaluation, False, None, note)
    rows = load_dialogues(source, train_split)
    if holdout == 0:
        note = f"no hold-out (holdout=0): evaluation uses the training dialogues of {source} [{train_split}]"
        train, evaluation = rows[:train_limit], rows[:eval_limit]
        return train, evaluation, _split_info(train_split, train, eval_split, evaluation, False, None, note)
    if len(rows) < 2:
        raise DataError(f"{source}: {len(rows)} dialogue(s) cannot be split into training and a held-out "
                        "evaluation part; give a separate evaluation split")
    n_eval = min(max(1, round(holdout * len(rows))), len(rows) - 1)
    chosen = set(random.Random(seed).sample(range(len(rows)), n_eval))
    train = [r for i, r in enumerate(rows) if i not in chosen][:train_limit]
    evaluation = [r for i, r in enumerate(rows) if i in chosen][:eval_limit]
    note = (f"{source} serves both splits: held out {n_eval} of {len(rows)} dialogues ({holdout:.0%}, seed {seed}) "
            f"for evaluation; training uses the other {len(rows) - n_eval}")
    return train, evaluation, _split_info(train_split, train, eval_split, evaluation, True, seed, note)


def _split_info(train_split: str, train: list[dict], eval_split: str, evaluation: list[dict], held_out: bool,
                seed: int | None, note: str) -> dict:
    return {"train": {"split": train_split, "n": len(train)}, "eval": {"split": eval_split, "n": len(evaluation)},
            "held_out": held_out, "holdout_seed": seed, "note": note}


def available(choices: dict[str, str]) -> list[str]:
    """The named sources (name -> split) that exist on this machine, in order: what the app and the Train tab offer
    as their fixed dataset choices (users never type paths)."""
    out = []
    for name, split in choices.items():
        try:
            resolve_source(name, split)
            out.append(name)
        except (DataError, OSError):
            continue
    return out
