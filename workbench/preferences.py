"""Preference pairs from Compare votes (and from automatic scorers): a dataset in the local store, laid out like a
Hub dataset repo, with the statistics of the Preferences view.

Layout (the same files a Hub dataset repo holds, so `push_to_hub` uploads them as they are)::

    store/datasets/<namespace>/<name>/README.md          dataset card: YAML front matter (configs -> data files,
                                                         features) + counts; rewritten atomically
    store/datasets/<namespace>/<name>/data/pairs.jsonl   one preference pair per line, appended

A vote becomes pairs (`build_pairs`): the best output beats every other shown output, an own summary beats every
output, unacceptable outputs lose to every acceptable one; identical texts make no pair. All the pairs of one vote
are appended with ONE write() on an O_APPEND file under an exclusive `flock`, then fsync'ed before `record_vote`
returns: a vote whose call returned survives a SIGKILL right after, and concurrent voters (threads or processes)
neither interleave nor lose lines. A writer killed mid-write can leave a torn last line: readers skip any line that
is not a whole record, and the next writer cuts it off (its call never returned, so nothing promised is lost).

Every column is a scalar (settings are a JSON string) so that `datasets.load_dataset("json", data_files=...)` reads
votes and automatic pairs with one schema. `prompt`, `chosen`, `rejected` are what trl's preference trainers take.

Statistics: per-model win rates with 95% bootstrap CIs over votes (the pairs of one vote are not independent, so
votes are the resampled unit), and a Bradley-Terry leaderboard on the Elo scale (400 * log10 strength, centred on
1000) fitted as a logistic regression (Newton steps), with bootstrap intervals over votes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from workbench import store
from workbench.io import atomic_write_text

log = logging.getLogger(__name__)

DATA_FILE = Path("data") / "pairs.jsonl"
HUMAN = "human"  # the model name of an own summary
OWN_SLOT = "own"
MAX_TEXT = 20_000  # characters of any one text field: a vote is a few summaries, not a document dump
COLUMNS = {  # column -> datasets dtype; every record has exactly these keys
    "vote_id": "string", "pair_index": "int64", "source": "string", "reason": "string", "dialogue_id": "string",
    "dialogue": "string", "prompt": "string", "chosen": "string", "rejected": "string",
    "chosen_model": "string", "chosen_revision": "string", "chosen_slot": "string",
    "rejected_model": "string", "rejected_revision": "string", "rejected_slot": "string",
    "settings": "string", "voter": "string", "created_at": "string",
}


class PreferenceError(ValueError):
    """A vote or dataset request that cannot be honoured; one line naming what is wrong."""


class Candidate(NamedTuple):
    """One side of a pair: which slot showed it, which model (and revision) wrote it, and the text."""

    slot: str
    model_id: str
    revision: str
    text: str


# ------------------------------------------------------------------------------------------------ layout


def dataset_dir(name: str) -> Path:
    """The dataset's folder in the local store (store/datasets/<namespace>/<name>)."""
    try:
        store.validate_repo_id(name)
    except store.StoreError as err:
        raise PreferenceError(f"preference dataset {err}") from None
    return store.LocalStore().root / "datasets" / name


def data_path(name: str) -> Path:
    return dataset_dir(name) / DATA_FILE


def remove(name: str) -> None:
    """Delete a preference dataset from the local store (trainers.pairs --if-exists replace)."""
    shutil.rmtree(dataset_dir(name), ignore_errors=True)


def list_datasets() -> list[str]:
    """Names of the preference datasets in the local store."""
    root = store.LocalStore().root / "datasets"
    return sorted(f"{p.parent.parent.parent.name}/{p.parent.parent.name}" for p in root.glob(f"*/*/{DATA_FILE}"))


# ------------------------------------------------------------------------------------------------ votes -> pairs


def utc_stamp() -> str:
    """UTC time with milliseconds: votes seconds apart still sort."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise PreferenceError(f"{what}: expected text, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise PreferenceError(f"{what}: {len(value)} characters is more than the {MAX_TEXT} allowed")
    return value


def _candidates(outputs: Mapping) -> dict[str, Candidate]:
    """slot -> Candidate from {slot: (model_id, revision, summary)} (or a mapping with those keys)."""
    if not isinstance(outputs, Mapping) or not outputs:
        raise PreferenceError("outputs: expected {slot: (model_id, revision, summary)} with at least one output")
    found = {}
    for slot, value in outputs.items():
        if isinstance(value, Mapping):
            value = (value.get("model_id"), value.get("revision"), value.get("summary"))
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            raise PreferenceError(f"outputs[{slot!r}]: expected (model_id, revision, summary)")
        model_id, revision, summary = value
        if not isinstance(slot, str) or not slot or slot == OWN_SLOT:
            raise PreferenceError(f"outputs: slot {slot!r} must be a non-empty name other than {OWN_SLOT!r}")
        if not isinstance(model_id, str) or not model_id.strip():
            raise PreferenceError(f"outputs[{slot!r}]: model_id must be a non-empty name")
        found[slot] = Candidate(slot, model_id, str(revision or ""), _text(summary, f"outputs[{slot!r}] summary"))
    return found


def _ordered_pairs(shown: dict[str, Candidate], best: str | None, unacceptable: list[str],
                   own: Candidate | None) -> list[tuple[Candidate, Candidate, str]]:
    """(chosen, rejected, reason) by the three rules, first reason wins, no self-pairs, no identical texts."""
    proposed = []
    if own is not None:
        proposed += [(own, c, "own_summary") for c in shown.values()]
    if best is not None:
        proposed += [(shown[best], c, "best") for slot, c in shown.items() if slot != best]
    acceptable = [c for slot, c in shown.items() if slot not in unacceptable]
    proposed += [(a, shown[u], "unacceptable") for a in acceptable for u in unacceptable]
    pairs, seen = [], set()
    for chosen, rejected, reason in proposed:
        key = (chosen.slot, rejected.slot)
        if chosen.slot == rejected.slot or key in seen or chosen.text.strip() == rejected.text.strip():
            continue
        seen.add(key)
        pairs.append((chosen, rejected, reason))
    return pairs


def pair_record(*, vote_id: str, index: int, reason: str, prompt: str, dialogue: str, chosen: Candidate,
                rejected: Candidate, settings: Mapping | None, voter: str, created_at: str, source: str,
                dialogue_id: str = "") -> dict:
    """One preference pair in the dataset's schema (see COLUMNS)."""
    return {"vote_id": vote_id, "pair_index": int(index), "source": source, "reason": reason,
            "dialogue_id": str(dialogue_id or ""), "dialogue": dialogue, "prompt": prompt,
            "chosen": chosen.text, "rejected": rejected.text,
            "chosen_model": chosen.model_id, "chosen_revision": chosen.revision, "chosen_slot": chosen.slot,
            "rejected_model": rejected.model_id, "rejected_revision": rejected.revision,
            "rejected_slot": rejected.slot, "settings": json.dumps(dict(settings or {}), sort_keys=True, default=str),
            "voter": voter, "created_at": created_at}


def build_pairs(*, dialogue: str, prompt: str, outputs: Mapping, best: str | None = None,
                unacceptable: Iterable[str] = (), own_summary: str | None = None, settings: Mapping | None = None,
                voter: str = "anonymous", dialogue_id: str = "", vote_id: str | None = None) -> list[dict]:
    """The preference pairs one vote stands for (nothing is written). Raises PreferenceError on a vote that names
    slots that were not shown, marks the best output unacceptable, or says nothing."""
    shown = _candidates(outputs)
    unacceptable = list(dict.fromkeys(unacceptable or ()))
    if best is not None and best not in shown:
        raise PreferenceError(f"best: {best!r} is not one of the shown outputs ({', '.join(shown)})")
    unknown = [u for u in unacceptable if u not in shown]
    if unknown:
        raise PreferenceError(f"unacceptable: {', '.join(map(repr, unknown))} not among the shown outputs")
    if best is not None and best in unacceptable:
        raise PreferenceError(f"best: {best!r} is also marked unacceptable")
    if best is not None and not shown[best].text.strip():
        raise PreferenceError(f"best: {best!r} is an empty summary; mark it unacceptable or write your own")
    own_summary = _text(own_summary, "own_summary").strip() if own_summary is not None else ""
    if best is None and not unacceptable and not own_summary:
        raise PreferenceError("a vote needs a best output, unacceptable outputs or an own summary")
    voter = _text(voter, "voter").strip()[:200] or "anonymous"
    own = Candidate(OWN_SLOT, HUMAN, "", own_summary) if own_summary else None
    vote_id, created_at = vote_id or uuid.uuid4().hex, utc_stamp()
    return [pair_record(vote_id=vote_id, index=i, reason=reason, prompt=_text(prompt, "prompt"),
                        dialogue=_text(dialogue, "dialogue"), chosen=chosen, rejected=rejected, settings=settings,
                        voter=voter, created_at=created_at, source="vote", dialogue_id=dialogue_id)
            for i, (chosen, rejected, reason) in enumerate(_ordered_pairs(shown, best, unacceptable, own))]


def record_vote(dataset_name: str, *, dialogue: str, prompt: str, outputs: Mapping, best: str | None = None,
                unacceptable: Iterable[str] = (), own_summary: str | None = None, settings: Mapping | None = None,
                voter: str = "anonymous", dialogue_id: str = "") -> list[dict]:
    """Turn a vote into pairs and append them durably (on disk when this returns); returns the records written.
    `prompt` is the exact text the models were given (e.g. prompts.zero_shot(dialogue)): trl's preference trainers
    train on prompt -> chosen/rejected. A vote that implies no pair (e.g. 'best' with a single output) writes nothing
    and returns []."""
    records = build_pairs(dialogue=dialogue, prompt=prompt, outputs=outputs, best=best, unacceptable=unacceptable,
                          own_summary=own_summary, settings=settings, voter=voter, dialogue_id=dialogue_id)
    append_records(dataset_name, records)
    return records


# ------------------------------------------------------------------------------------------------ storage


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _end_of_last_line(fd: int, size: int) -> int:
    """The file offset just after the last newline (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _append_durably(path: Path, payload: bytes) -> None:
    """Append `payload` (whole lines) under an exclusive flock with one write(), then fsync. A torn tail (a writer
    killed mid-write, whose call never returned) is cut off first, so the file stays valid JSON Lines for
    `datasets.load_dataset` and ours starts on a line of its own."""
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.ftruncate(fd, _end_of_last_line(fd, size))
            written = os.write(fd, payload)
            while written < len(payload):  # only on a full disk or a signal; the lock keeps the lines together
                written += os.write(fd, payload[written:])
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)
        _fsync_dir(path.parent.parent)


def append_records(dataset_name: str, records: list[dict], *, refresh: bool = True) -> None:
    """Append pair records (all in one write) and, with `refresh`, rewrite the dataset card's counts. The card is
    best effort: the records are already durable, so a failure to refresh it is logged, not raised (a caller that
    retried on an error would otherwise record the vote twice)."""
    for record in records:
        if set(record) != set(COLUMNS):
            raise PreferenceError(f"record columns {sorted(set(record) ^ set(COLUMNS))} differ from the schema")
    if not records:
        return
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    _append_durably(data_path(dataset_name), payload)
    if refresh:
        try:
            refresh_card(dataset_name)
        except OSError as err:
            log.warning("%s: dataset card not refreshed (%s); the pairs are saved", dataset_name, err)


def read_records(path: str | os.PathLike) -> tuple[list[dict], int]:
    """(records, lines skipped): lines that are not a whole record (a torn write) are skipped."""
    path = Path(path)
    if not path.exists():
        return [], 0
    records, skipped = [], 0
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("chosen"), str) and \
                isinstance(record.get("rejected"), str):
            records.append(record)
        else:
            skipped += 1
    return records, skipped


def load_pairs(dataset_name: str) -> list[dict]:
    """Every complete pair of the dataset in append order (oldest first); [] for a dataset with no votes yet."""
    records, skipped = read_records(data_path(dataset_name))
    if skipped:
        log.warning("%s: skipped %d incomplete line(s) (a write interrupted by a kill)", dataset_name, skipped)
    return records


# ------------------------------------------------------------------------------------------------ card, export, push


def counts(pairs: list[dict]) -> dict:
    """Numbers for the card and the Preferences view."""
    sources: dict[str, int] = {}
    models: dict[str, dict[str, int]] = {}
    for p in pairs:
        sources[p.get("source", "?")] = sources.get(p.get("source", "?"), 0) + 1
        for side in ("chosen", "rejected"):
            entry = models.setdefault(p.get(f"{side}_model", "?"), {"chosen": 0, "rejected": 0})
            entry[side] += 1
    return {"pairs": len(pairs), "votes": len({p["vote_id"] for p in pairs}),
            "voters": len({p.get("voter") for p in pairs}),
            "dialogues": len({p.get("dialogue") for p in pairs}), "by_source": sources, "by_model": models}


def card_text(dataset_name: str, pairs: list[dict]) -> str:
    """A Hub dataset card: front matter pointing the default config at the data files, then the counts."""
    c = counts(pairs)
    front = ["---", "configs:", "- config_name: default", "  data_files:", "  - split: train",
             f"    path: {DATA_FILE.parent.as_posix()}/*.jsonl", "dataset_info:", "  features:"]
    front += [f"  - name: {name}\n    dtype: {dtype}" for name, dtype in COLUMNS.items()]
    front += ["tags:", "- preference", "- dialogue-summarization", "- workbench", "task_categories:",
              "- summarization", "---"]
    model_rows = [f"| `{m}` | {v['chosen']} | {v['rejected']} |" for m, v in sorted(c["by_model"].items())]
    source_text = ", ".join(f"{n} from {s}" for s, n in sorted(c["by_source"].items())) or "none yet"
    lines = [*front, "", f"# {dataset_name}", "",
             "Preference pairs for dialogue summaries (`prompt`, `chosen`, `rejected`), from votes in the "
             "workbench's Compare view (`source: vote`) or from an automatic scorer (`source: auto`).", "",
             f"**{c['pairs']} pairs** from {c['votes']} votes by {c['voters']} voter(s) on {c['dialogues']} "
             f"dialogue(s); {source_text}.", "",
             "| model | chosen | rejected |", "|---|---|---|", *model_rows, "",
             "Rules: the best output beats every other shown output; an own summary (model `human`) beats every "
             "output; unacceptable outputs lose to every acceptable one. `settings` is the generation settings as "
             "JSON. Pairs of one vote share `vote_id`.", "", "```python", "import datasets",
             'pairs = datasets.load_dataset("json", data_files="data/*.jsonl", split="train")', "```", ""]
    return "\n".join(lines)


def refresh_card(dataset_name: str) -> Path:
    """Rewrite README.md from the data on disk (atomic). Serialised by a lock so that the last card written was
    counted after the last append that preceded it."""
    folder = dataset_dir(dataset_name)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".card.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        pairs = load_pairs(dataset_name)
        return atomic_write_text(folder / "README.md", card_text(dataset_name, pairs))
    finally:
        os.close(fd)  # closing releases the lock


def _stage(dataset_name: str, folder: Path) -> Path:
    """A clean copy of the dataset repo in `folder`: complete records only, a fresh card."""
    pairs = load_pairs(dataset_name)
    if not pairs:
        raise PreferenceError(f"{dataset_name}: no preference pairs yet (vote in Compare or run trainers.pairs)")
    (folder / DATA_FILE).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / DATA_FILE, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    atomic_write_text(folder / "README.md", card_text(dataset_name, pairs))
    return folder


def export(dataset_name: str, path: str | os.PathLike | None = None) -> Path:
    """Write the complete pairs to `path`: `.jsonl` (the pairs) or `.zip` (the dataset repo: card + data).
    Default: a new temporary `<namespace>--<name>.zip`. The file appears whole (written aside, then renamed)."""
    path = Path(path) if path is not None else \
        Path(tempfile.mkdtemp(prefix="preferences-")) / f"{dataset_name.replace('/', '--')}.zip"
    if path.suffix not in {".jsonl", ".zip"}:
        raise PreferenceError(f"export: {path.name}: use a .jsonl or .zip file name")
    with tempfile.TemporaryDirectory() as tmp:
        staged = _stage(dataset_name, Path(tmp) / "repo")
        if path.suffix == ".jsonl":
            atomic_write_text(path, (staged / DATA_FILE).read_text(encoding="utf-8"))
            return path
        built = Path(tmp) / "export.zip"
        with zipfile.ZipFile(built, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in ("README.md", DATA_FILE.as_posix()):
                archive.write(staged / name, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), str(path.with_name(f".{path.name}.tmp")))
        os.replace(path.with_name(f".{path.name}.tmp"), path)
    return path


def push_to_hub(dataset_name: str, repo_id: str, *, private: bool | None = None, api=None) -> str:
    """Upload the dataset (a clean copy: complete pairs + card) as a Hub dataset repo; returns the commit's URL or
    id. The token comes from HF_TOKEN or `hf auth login` and is never printed."""
    from huggingface_hub import HfApi

    store.validate_repo_id(repo_id)
    api = api or HfApi()
    with tempfile.TemporaryDirectory() as tmp:
        staged = _stage(dataset_name, Path(tmp) / "repo")
        try:
            api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
            info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(staged),
                                     commit_message=f"Upload {dataset_name} from the workbench")
        except Exception as err:  # noqa: BLE001 - every Hub failure becomes one actionable line
            raise store.StoreError(f"push to {repo_id} failed: {store._hub_reason(err, pushing=True)}") from None
    return str(getattr(info, "commit_url", None) or getattr(info, "oid", None) or info)


# ------------------------------------------------------------------------------------------------ statistics


def _comparisons(pairs: list[dict], by_revision: bool, include_human: bool):
    """(models, vote index per pair, winner index, loser index) over pairs between two different models."""
    def key(p: dict, side: str) -> str:
        rev = p.get(f"{side}_revision") or ""
        return f"{p[f'{side}_model']}@{rev[:12]}" if by_revision and rev else p[f"{side}_model"]

    kept = [(p["vote_id"], key(p, "chosen"), key(p, "rejected")) for p in pairs]
    kept = [k for k in kept if k[1] != k[2] and (include_human or HUMAN not in (k[1], k[2]))]
    models = sorted({m for _, a, b in kept for m in (a, b)})
    votes = list(dict.fromkeys(v for v, _, _ in kept))
    m_index, v_index = {m: i for i, m in enumerate(models)}, {v: i for i, v in enumerate(votes)}
    vote = np.array([v_index[v] for v, _, _ in kept], dtype=int)
    return (models, vote, np.array([m_index[a] for _, a, _ in kept], dtype=int),
            np.array([m_index[b] for _, _, b in kept], dtype=int))


def _vote_weights(n_votes: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_votes) counts: how often each vote appears in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_votes, np.full(n_votes, 1.0 / n_votes), size=n_boot).astype(float)


def win_rates(pairs: list[dict], *, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
              by_revision: bool = False, include_human: bool = False):
    """Per model: comparisons, wins, win rate (wins / comparisons) with a percentile bootstrap CI over votes.
    Own summaries (model `human`) are left out unless `include_human`."""
    import pandas as pd

    models, vote, win, lose = _comparisons(pairs, by_revision, include_human)
    columns = ["model", "votes", "comparisons", "wins", "win_rate", "ci_low", "ci_high"]
    if not models:
        return pd.DataFrame(columns=columns)
    n_votes, n_models = int(vote.max()) + 1, len(models)
    wins, comps = np.zeros((n_votes, n_models)), np.zeros((n_votes, n_models))
    np.add.at(wins, (vote, win), 1)
    np.add.at(comps, (vote, win), 1)
    np.add.at(comps, (vote, lose), 1)
    weights = _vote_weights(n_votes, n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (weights @ wins) / (weights @ comps)
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(boot, alpha, axis=0), np.nanquantile(boot, 1 - alpha, axis=0)
    frame = pd.DataFrame({"model": models, "votes": (comps > 0).sum(0), "comparisons": comps.sum(0).astype(int),
                          "wins": wins.sum(0).astype(int), "win_rate": wins.sum(0) / comps.sum(0),
                          "ci_low": low, "ci_high": high}, columns=columns)
    return frame.sort_values(["win_rate", "comparisons"], ascending=False, ignore_index=True)


def fit_bradley_terry(wins: np.ndarray, prior: float = 1.0, max_iter: int = 100,
                      tol: float = 1e-9) -> np.ndarray:
    """Bradley-Terry log10-strengths from a win matrix (wins[i, j] = times i beat j): the maximum-likelihood
    logistic regression, solved by Newton steps with step halving (a handful of steps, where Zermelo/MM
    iterations needed thousands on spread-out strengths).

    Each model also plays `prior` wins and `prior` losses against a fixed virtual opponent of strength 1: that keeps
    strengths finite for a model that never lost (or never won), ties models no comparison connects, and makes the
    likelihood strictly concave, so Newton's method converges."""
    wins = np.asarray(wins, dtype=float)
    games = wins + wins.T
    theta = np.zeros(len(wins))

    def loglik(t: np.ndarray) -> float:
        return float(-(wins * np.logaddexp(0, t[None, :] - t[:, None])).sum()
                     - prior * (np.logaddexp(0, -t) + np.logaddexp(0, t)).sum())

    for _ in range(max_iter):
        p = 1 / (1 + np.exp(theta[None, :] - theta[:, None]))  # p[i, j] = P(i beats j)
        q = 1 / (1 + np.exp(-theta))  # P(i beats the virtual opponent)
        grad = wins.sum(1) + prior - (games * p).sum(1) - 2 * prior * q
        curvature = games * p * (1 - p)
        hessian = curvature - np.diag(curvature.sum(1) + 2 * prior * q * (1 - q))
        step, size, before = np.linalg.solve(hessian, -grad), 1.0, loglik(theta)
        while loglik(theta + size * step) < before and size > 1e-8:
            size /= 2
        theta = theta + size * step
        if np.max(np.abs(size * step)) < tol:
            break
    return theta / np.log(10)


def _elo(log10_strength: np.ndarray) -> np.ndarray:
    scores = 400 * log10_strength
    return 1000 + scores - scores.mean()


def bradley_terry(pairs: list[dict], *, n_boot: int = 200, seed: int = 0, confidence: float = 0.95,
                  prior: float = 1.0, by_revision: bool = False, include_human: bool = False):
    """The leaderboard: Bradley-Terry scores on the Elo scale (400 * log10 strength, mean 1000; +400 = 10:1 odds)
    with percentile bootstrap intervals over votes, best first."""
    import pandas as pd

    models, vote, win, lose = _comparisons(pairs, by_revision, include_human)
    columns = ["rank", "model", "score", "ci_low", "ci_high", "comparisons"]
    if not models:
        return pd.DataFrame(columns=columns)
    n = len(models)
    matrix = np.zeros((n, n))
    np.add.at(matrix, (win, lose), 1)
    score = _elo(fit_bradley_terry(matrix, prior))
    boot = np.empty((n_boot, n))
    for b, weights in enumerate(_vote_weights(int(vote.max()) + 1, n_boot, seed)):
        resampled = np.zeros((n, n))
        np.add.at(resampled, (win, lose), weights[vote])
        boot[b] = _elo(fit_bradley_terry(resampled, prior))
    alpha = (1 - confidence) / 2
    frame = pd.DataFrame({"model": models, "score": score, "ci_low": np.quantile(boot, alpha, axis=0),
                          "ci_high": np.quantile(boot, 1 - alpha, axis=0),
                          "comparisons": (matrix + matrix.T).sum(1).astype(int)})
    frame = frame.sort_values("score", ascending=False, ignore_index=True)
    frame.insert(0, "rank", range(1, n + 1))
    return frame[columns]


def latest_votes(pairs: list[dict], n: int = 20):
    """The newest `n` votes, one row each: time, voter, what won, what lost, pairs, dialogue start."""
    import pandas as pd

    votes: dict[str, list[dict]] = {}
    for p in pairs:
        votes.setdefault(p["vote_id"], []).append(p)
    rows = []
    for vote_id, group in list(votes.items())[::-1][:n]:
        first = group[0]
        winners = list(dict.fromkeys(p["chosen_model"] for p in group if p["reason"] in ("best", "own_summary")))
        rejected = list(dict.fromkeys(p["rejected_model"] for p in group if p["reason"] == "unacceptable"))
        rows.append({"time": first["created_at"], "voter": first["voter"], "source": first["source"],
                     "best": ", ".join(winners), "unacceptable": ", ".join(rejected), "pairs": len(group),
                     "dialogue": first["dialogue"][:80], "vote_id": vote_id})
    return pd.DataFrame(rows, columns=["time", "voter", "source", "best", "unacceptable", "pairs", "dialogue",
                                       "vote_id"])


@dataclass
class PreferenceStats:
    """Everything the Preferences view shows for one dataset."""

    dataset: str
    counts: dict
    win_rates: object  # pandas.DataFrame
    leaderboard: object  # pandas.DataFrame
    latest: object  # pandas.DataFrame


def summarize(dataset_name: str, *, n_boot: int = 200, seed: int = 0, latest: int = 20,
              by_revision: bool = False) -> PreferenceStats:
    """Counts, win rates, the Bradley-Terry leaderboard and the latest votes of a dataset."""
    pairs = load_pairs(dataset_name)
    return PreferenceStats(dataset=dataset_name, counts=counts(pairs),
                           win_rates=win_rates(pairs, n_boot=n_boot, seed=seed, by_revision=by_revision),
                           leaderboard=bradley_terry(pairs, n_boot=n_boot, seed=seed, by_revision=by_revision),
                           latest=latest_votes(pairs, latest))


# ------------------------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    """`python -m workbench.preferences {stats,export,push} NAME ...`: the Preferences view's actions, scripted."""
    parser = argparse.ArgumentParser(prog="python -m workbench.preferences", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the preference datasets in the local store")
    for name, text in (("stats", "counts, win rates and the leaderboard"), ("export", "write a .jsonl or .zip"),
                       ("push", "push to the Hub as a dataset repo")):
        command = sub.add_parser(name, help=text)
        command.add_argument("dataset", help="preference dataset name (namespace/name) in the local store")
        if name == "export":
            command.add_argument("path", help="output file: .jsonl (pairs) or .zip (card + data)")
        if name == "push":
            command.add_argument("repo_id", help="Hub dataset repo (namespace/name)")
            command.add_argument("--private", action="store_true", help="create the repo private")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print("\n".join(list_datasets()) or "(no preference datasets)")
        elif args.command == "stats":
            stats = summarize(args.dataset)
            print(json.dumps({k: v for k, v in stats.counts.items() if k != "by_model"}))
            print(stats.win_rates.to_string(index=False), stats.leaderboard.to_string(index=False), sep="\n\n")
        elif args.command == "export":
            print(export(args.dataset, args.path))
        else:
            print(push_to_hub(args.dataset, args.repo_id, private=args.private or None))
    except (PreferenceError, store.StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
