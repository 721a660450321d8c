"""The model store: a local folder laid out like Hugging Face Hub repos (the offline default), or the Hub itself.

Local layout (one folder per repo, one immutable folder per revision, a ref naming the current one)::

    store/<namespace>/<name>/refs/main            text: the revision id served as "main"
    store/<namespace>/<name>/revisions/<rev>/     the files a Hub repo holds: config.json + model.safetensors, or
                                                  adapter_config.json + adapter_model.safetensors; tokenizer files;
                                                  README.md (model card); metrics.json

A revision id is a hash of the folder's contents, metrics.json counted as it was before the revision id was filled
into it (`publish_run` writes it from the run's results/ record, so the published copy names its own revision and a
changed score is caught like a changed weight). Publishing copies into a hidden temporary folder, renames it into
place and only then moves `refs/main` (an atomic file replace), so the workbench sees the old model or the new one,
never half of one. Weights must be safetensors; pickle-based files are refused on publish and on load.

The Hub path uses `huggingface_hub` (token from the environment or `hf auth login`; never printed or saved).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from workbench import paths
from workbench.io import atomic_write_json, atomic_write_text, json_bytes

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "README.md"]
HASH_NAME = re.compile(r"^[0-9a-f]{12}$")  # revisions published by LocalStore are named by content_hash
METRICS_FILE = "metrics.json"
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")
PROBE_SECONDS = 2.0  # how long the one reachability probe waits for the Hub before falling back to the cache
NETWORK_ERRORS = {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "ConnectionError",
                  "TimeoutError", "URLError"}


class StoreError(RuntimeError):
    """A one-line, actionable error about a store or Hub operation."""


def validate_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or ".." in repo_id:
        raise StoreError(f"{repo_id!r} is not a valid repo id: use namespace/name (letters, digits, . _ -)")
    return repo_id


def _validate_revision(revision: str) -> str:
    if not isinstance(revision, str) or not REVISION.match(revision) or ".." in revision:
        raise StoreError(f"{revision!r} is not a valid revision")
    return revision


def check_safetensors(folder: str | Path) -> Path:
    """Refuse folders with pickle-based weights, a model config without safetensors weights, or unreadable
    safetensors; return the folder."""
    from safetensors import safe_open

    folder = Path(folder)
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise StoreError(f"{folder}: refusing pickle-based weight files ({', '.join(pickled)}); "
                         "only safetensors are loaded: convert them to safetensors and publish again")
    tensors = sorted(folder.glob("*.safetensors"))
    is_model = (folder / "config.json").exists() or (folder / "adapter_config.json").exists()
    if not tensors and (is_model or not (folder / "tokenizer.json").exists()):
        raise StoreError(f"{folder}: no safetensors weights found (pickle-based weights are never loaded); "
                         "publish the model with safetensors weights")
    for path in tensors:
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # noqa: BLE001 - any parse failure means a corrupt file
            raise StoreError(f"{path}: corrupt or not a safetensors file ({str(err).splitlines()[0][:120]}); "
                             "re-publish or re-download it") from None
    return folder


def _published_files(folder: Path) -> list[Path]:
    """The files a revision consists of: the folder's top-level files, hidden ones (bookkeeping) excluded."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def content_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in _published_files(folder):
        digest.update(path.name.encode())
        if path.name == METRICS_FILE:
            digest.update(_unfilled_metrics(path))
            continue
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def _run_record(path: Path) -> dict | None:
    """The run record in a metrics.json, if it is one (a JSON object with a "revision" field)."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "revision" in record else None


def _unfilled_metrics(path: Path) -> bytes:
    """metrics.json as hashed: a run record with its revision blanked (the id cannot be part of what it names)."""
    record = _run_record(path)
    if record is None or record["revision"] is None:
        return path.read_bytes()
    return json_bytes({**record, "revision": None})


def _fill_revision(path: Path, revision: str) -> None:
    """Write the revision into a published metrics.json that holds a run record (a no-op for anything else)."""
    record = _run_record(path) if path.exists() else None
    if record is not None and json_bytes({**record, "revision": None}) == _unfilled_metrics(path):
        atomic_write_json(path, {**record, "revision": revision})


def _remove_abandoned_staging(revisions: Path) -> None:
    """Staging folders (`.tmp-<pid>-*`) of publishes whose process died mid-copy are garbage: remove them."""
    for path in revisions.glob(".tmp-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shown_path(path: Path) -> str:
    """A folder as messages show it: relative to the repository when inside it, so that an error shown in the app (on a
    Space, to anyone) does not reveal the server's directory layout."""
    try:
        return str(Path(path).resolve().relative_to(paths.REPO_ROOT)) or "."
    except ValueError:
        return Path(path).name


class LocalStore:
    def __init__(self, root: str | Path | None = None):
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        return self._root if self._root is not None else paths.STORE_DIR

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / validate_repo_id(repo_id)

    def exists(self, repo_id: str) -> bool:
        return (self.repo_dir(repo_id) / "refs" / "main").is_file()

    def list_repos(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(f"{ref.parent.parent.parent.name}/{ref.parent.parent.name}"
                      for ref in self.root.glob("*/*/refs/main"))

    def revisions(self, repo_id: str) -> list[str]:
        """Published revisions, oldest first."""
        folder = self.repo_dir(repo_id) / "revisions"
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]

        def published_ns(p: Path) -> int:
            try:
                return int((p / ".published").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return 0

        return [p.name for p in sorted(found, key=lambda p: (published_ns(p), p.name))]

    def head(self, repo_id: str) -> str:
        ref = self.repo_dir(repo_id) / "refs" / "main"
        if not ref.is_file():
            close = close_names(repo_id, self.list_repos())
            hint = f"close names: {', '.join(close)}" if close else "publish it with a trainer"
            raise StoreError(f"{repo_id}: not in the local store at {shown_path(self.root)}/ ({hint})")
        return ref.read_text().strip()

    def resolve(self, repo_id: str, revision: str = "main") -> Path:
        rev = self.head(repo_id) if revision == "main" else _validate_revision(revision)
        folder = self.repo_dir(repo_id) / "revisions" / rev
        if not folder.is_dir():
            known = ", ".join(self.revisions(repo_id)) or "none"
            raise StoreError(f"{repo_id}: revision {revision!r} not found in the local store (known: {known})")
        return self.verify(repo_id, folder)

    def verify(self, repo_id: str, folder: Path) -> Path:
        """A published revision is named by the hash of its files: refuse one whose files changed since (a corrupted
        or hand-edited weight file would otherwise load silently)."""
        if HASH_NAME.match(folder.name) and content_hash(folder) != folder.name:
            raise StoreError(f"{repo_id}: revision {folder.name} is corrupted (its files no longer match the hash they "
                             "were published under); publish it again (re-run its trainer) or restore the store folder")
        return folder

    def publish(self, folder: str | Path, repo_id: str, *, message: str = "") -> str:
        """Copy `folder` in as a new revision and point refs/main at it; returns the revision id."""
        folder = check_safetensors(Path(folder))
        repo = self.repo_dir(repo_id)
        revisions = repo / "revisions"
        revisions.mkdir(parents=True, exist_ok=True)
        rev = content_hash(folder)
        target = revisions / rev
        _remove_abandoned_staging(revisions)
        if not target.exists():
            staging = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=revisions))
            staging.chmod(0o755)
            try:
                for path in _published_files(folder):
                    shutil.copy2(path, staging / path.name)
                _fill_revision(staging / METRICS_FILE, rev)
                from workbench import results

                stamp = f"{time.time_ns()} {results.utc_now()} {message}".strip()
                atomic_write_text(staging / ".published", stamp + "\n")
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        atomic_write_text(repo / "refs" / "main", rev + "\n")
        return rev

    def read_metrics(self, repo_id: str, revision: str = "main") -> dict | None:
        path = self.resolve(repo_id, revision) / METRICS_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def prune(self, repo_id: str, keep: int = 1) -> list[str]:
        """Delete all but the newest `keep` revisions (never the one refs/main names); returns what was removed."""
        head = self.head(repo_id)
        revs = self.revisions(repo_id)
        keep_set = set(revs[-keep:]) | {head}
        removed = [r for r in revs if r not in keep_set]
        for rev in removed:
            shutil.rmtree(self.repo_dir(repo_id) / "revisions" / rev)
        return removed


class HubStore:
    """The same operations against the Hugging Face Hub. The token comes from HF_TOKEN or the saved login."""

    def __init__(self):
        from huggingface_hub import HfApi

        self.api = HfApi()

    def publish(self, folder: str | Path, repo_id: str, *, message: str = "Upload from the workbench") -> str:
        folder = check_safetensors(Path(folder))
        validate_repo_id(repo_id)
        try:
            self.api.create_repo(repo_id, exist_ok=True)
            info = self.api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message,
                                          allow_patterns=HUB_PATTERNS)
        except Exception as err:  # noqa: BLE001
            raise StoreError(f"push to {repo_id} failed: {_hub_reason(err, pushing=True)}") from None
        return getattr(info, "oid", None) or str(info)

    def resolve(self, repo_id: str, revision: str = "main", *, not_local: Path | None = None) -> Path:
        """Download (or find in the HF cache) the safetensors snapshot of a Hub repo. `not_local`: the local store
        that was tried first, named in the error with the names it does hold.

        Fails fast without a network: with HF_HUB_OFFLINE nothing is sent; otherwise one quick probe decides first,
        because huggingface_hub's own requests wait without a timeout where a network drops packets. When the Hub
        cannot be reached, a copy in the HF cache still serves."""
        from huggingface_hub import snapshot_download

        validate_repo_id(repo_id)
        unreachable = None if _hub_offline() else _probe(repo_id, revision)
        try:
            folder = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS,
                                       local_files_only=unreachable is not None)
        except Exception as err:  # noqa: BLE001
            raise StoreError(_not_loaded(repo_id, revision, unreachable or err, not_local)) from None
        return check_safetensors(Path(folder))

    def push_space(self, folder: str | Path, repo_id: str, *, message: str = "Upload the workbench Space") -> str:
        """Push a staged Space folder (spaces/build_space.py) as a Gradio Space repo; returns the commit id."""
        validate_repo_id(repo_id)
        try:
            self.api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
            info = self.api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=str(folder),
                                          commit_message=message)
        except Exception as err:  # noqa: BLE001
            raise StoreError(f"push of the Space {repo_id} failed: {_hub_reason(err, pushing=True)}") from None
        return getattr(info, "oid", None) or str(info)


def _probe(repo_id: str, revision: str) -> Exception | None:
    """Whether the Hub answers at all within PROBE_SECONDS: None if it does (any HTTP answer, even an error: the
    download then says what it means), else the network error. No token is sent."""
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    url = f"{_hub_endpoint()}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_SECONDS).close()
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as err:  # refused, timed out, no route, no DNS, a malformed HF_ENDPOINT
        return err
    return None


def close_names(name: str, names: list[str], n: int = 3) -> list[str]:
    """The names closest to `name` (typos, a namespace or suffix off), best first."""
    import difflib

    return difflib.get_close_matches(name, names, n=n, cutoff=0.6)


def _not_loaded(repo_id: str, revision: str, err: BaseException, not_local: Path | None) -> str:
    """The one-line error for a repo found neither in the local store nor on the Hub: what failed, what to do, and
    which local store names exist (offline: all of them, close ones first; otherwise the close ones)."""
    if not not_local:
        return f"{repo_id}@{revision}: could not load from the Hub: {_hub_reason(err)}"
    names = LocalStore(not_local).list_repos()
    close = close_names(repo_id, names)
    if _hub_offline() or _transient(err):
        shown = close + [n for n in names if n not in close]
        more = f" and {len(shown) - 6} more" if len(shown) > 6 else ""
        hint = f"; available offline in the local store: {', '.join(shown[:6])}{more}" if shown else \
            "; the local store is empty"
    else:
        hint = f"; close names in the local store: {', '.join(close)}" if close else ""
    return f"{repo_id}@{revision}: not in the local store ({not_local}) and not from the Hub: {_hub_reason(err)}{hint}"


def _transient(err: BaseException) -> bool:
    """The Hub could not be reached, timed out, or answered 429/5xx: a failure where what exists offline helps."""
    chain = _error_chain(err)
    kinds = {cls.__name__ for e in chain for cls in type(e).__mro__}
    status = next((e.response.status_code for e in chain
                   if isinstance(getattr(getattr(e, "response", None), "status_code", None), int)), None)
    if status is not None:
        return status == 429 or status >= 500
    return bool(kinds & NETWORK_ERRORS)


def _error_chain(err: BaseException) -> list[BaseException]:
    """The error and everything it was raised from (huggingface_hub wraps the HTTP error it got)."""
    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        chain.append(err)
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return chain


def _token() -> str | None:
    """The Hub token huggingface_hub will send (HF_TOKEN or the saved login), if any; only ever used to redact."""
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - an unreadable token file counts as no token
        return None


def redact(text: str) -> str:
    """`text` without Hub tokens: the configured token itself and anything shaped like one."""
    token = _token()
    if token and len(token) >= 4:
        text = text.replace(token, "***")
    text = re.sub(r"hf_[A-Za-z0-9]{6,}", "hf_***", text)
    return re.sub(r"(?i)(bearer|token)([\s:=]+)[^\s,;'\"]{6,}", r"\1\2***", text)


def _hub_reason(err: BaseException, *, pushing: bool = False) -> str:
    """What went wrong talking to the Hub, and what to do, in one line; never includes a token."""
    chain = _error_chain(err)
    kinds = {cls.__name__ for e in chain for cls in type(e).__mro__}
    status = next((e.response.status_code for e in chain
                   if isinstance(getattr(getattr(e, "response", None), "status_code", None), int)), None)
    login = "set HF_TOKEN or run `hf auth login`"
    if "RevisionNotFoundError" in kinds:
        return "revision not found on the Hub: check the branch, tag or commit name"
    if "GatedRepoError" in kinds:
        return f"gated repository: accept its conditions on the Hub with your account, then {login}"
    if "RepositoryNotFoundError" in kinds:
        return f"repository not found, or private and not visible to your token: check the id ({login} for a " \
               "private repo)"
    if "LocalTokenNotFoundError" in kinds:
        return f"no Hub token: {login} (pushing needs a token with write access)"
    if status == 401 and _token() is None:
        return f"authentication required and no Hub token is set: {login}"
    if status == 401:
        return f"authentication failed: the Hub rejected the token; {login} with a valid token"
    if status == 403:
        return "permission denied (403): the token has no access to this repo (pushing needs a write token)"
    if status == 429:
        return "rate-limited by the Hub (429): wait a little and retry"
    if status is not None and status >= 500:
        return f"the Hub answered with a server error ({status}): retry later"
    offline = "OfflineModeIsEnabled" in kinds or ("LocalEntryNotFoundError" in kinds and _hub_offline())
    if offline and pushing:
        return "HF_HUB_OFFLINE is set, so nothing is sent to the Hub: unset it on a machine with network access"
    if offline:
        return "HF_HUB_OFFLINE is set and the files are not in the local Hugging Face cache: unset it on a machine " \
               "with network access, or use a model from the local store"
    if kinds & (NETWORK_ERRORS | {"LocalEntryNotFoundError"}):
        if pushing:
            return f"the Hub ({_hub_endpoint()}) is not reachable: check the network connection and push again"
        return f"the Hub ({_hub_endpoint()}) is not reachable and the files are not in the local cache: check the " \
               "network connection, or use a model from the local store"
    if status == 404:
        return "not found on the Hub (404): check the repo id and file names"
    name = type(err).__name__
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), name)
    return f"{name}: {redact(text)[:200]}"


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def resolve(ref: str, revision: str = "main", *, allow_paths: bool = False) -> Path:
    """The folder holding `ref`: a local-store repo first, then the Hub; with allow_paths, also a local folder
    (trainer CLIs only; the app never accepts paths)."""
    if allow_paths and ref and (ref.startswith((".", "/", "~")) or Path(ref).expanduser().is_dir()):
        folder = Path(ref).expanduser()
        if not folder.is_dir():
            raise StoreError(f"{ref}: folder not found")
        return check_safetensors(folder)
    validate_repo_id(ref)
    local = LocalStore()
    if local.exists(ref):
        return check_safetensors(local.resolve(ref, revision))
    return HubStore().resolve(ref, revision, not_local=local.root)


def model_card(repo_id: str, *, base_model: str, method: str, dataset: str, metrics: dict | None,
               training: dict | None, params: dict | None, description: str | None = None) -> str:
    """A Hub model card: YAML front matter + what it is, how it was trained and what it scored (with CIs)."""
    is_adapter = method in {"lora", "ppo", "orpo", "cpo"}
    front = ["---", f"library_name: {'peft' if is_adapter else 'transformers'}", "pipeline_tag: summarization",
             "tags:", "- dialogue-summarization", f"- {method}", "- workbench"]
    if "/" in base_model and not base_model.startswith("("):
        front.append(f"base_model: {base_model}")
    front.append("---")
    lines = [*front, "", f"# {repo_id}", "",
             description or f"A {method} model for dialogue summarization, trained from `{base_model}` on `{dataset}`.",
             "", "| | |", "|---|---|", f"| method | {method} |", f"| base model | `{base_model}` |",
             f"| data | `{dataset}` |"]
    if params:
        share = params.get("trainable_share")
        lines.append(f"| parameters | {params.get('total', 0):,} total, {params.get('trainable', 0):,} trainable"
                     + (f" ({share:.2%})" if isinstance(share, float) else "") + " |")
    recipe = (training or {}).get("recipe")
    if recipe:
        training = {**training, "recipe": _repo_relative(str(recipe))}
        lines += ["", recipe_line(training["recipe"], method)]
    if metrics:
        lines += ["", "## Evaluation", "", "| metric | mean | 95% CI | n |", "|---|---|---|---|"]
        for key, value in metrics.items():
            if isinstance(value, dict) and "mean" in value:
                lines.append(f"| {key} | {value['mean']:.4f} | [{value['ci_low']:.4f}, {value['ci_high']:.4f}] | "
                             f"{value['n']} |")
    if training:
        lines += ["", "## Training", "", "```json", json.dumps(training, indent=2, default=str), "```"]
    lines += ["", "Weights are safetensors. Generated by the dialogue summarization workbench.", ""]
    return "\n".join(lines)


TRAINER_MODULES = {"full": "trainers.full", "lora": "trainers.lora", "ppo": "trainers.ppo", "reward": "trainers.reward",
                   "base": "trainers.pretrain"}


def _repo_relative(path: str) -> str:
    """`path` relative to the repository (a card never names a machine's folders); just the file name if outside."""
    if not Path(path).is_absolute():
        return Path(path).as_posix()
    try:
        return Path(path).resolve().relative_to(paths.REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def recipe_line(recipe: str, method: str) -> str:
    """The card's pointer to the committed config that reproduces the model, with the command that runs it."""
    recipe = _repo_relative(recipe)
    return f"Recipe: `{recipe}` (python -m {TRAINER_MODULES.get(method, f'trainers.{method}')} --config {recipe})"


def publish_local(folder: str | Path, repo_id: str, *, card: str, metrics: dict | None) -> str:
    """Write the card and metrics into `folder` and publish it to the local store; returns the new revision. A run
    record (`metrics` with a "revision" field) is published with that field set to the new revision, and `folder`'s
    copy too (what a later push to the Hub uploads)."""
    folder = Path(folder)
    atomic_write_text(folder / "README.md", card)
    if metrics is not None:
        atomic_write_json(folder / METRICS_FILE, {**metrics, "revision": None} if "revision" in metrics else metrics)
    revision = LocalStore().publish(folder, repo_id)
    _fill_revision(folder / METRICS_FILE, revision)
    return revision


def publish_run(folder: str | Path, repo_id: str, run: dict, *, card: str) -> dict:
    """Publish a trained model with its run record; returns the record with the new store revision filled in, which
    is what results/<run_id>.json is then written from: the store's metrics.json and the results/ file are one
    record (results/ stays the source: the dashboards read only it)."""
    from workbench import results

    revision = publish_local(folder, repo_id, card=card, metrics=results.validate({**run, "revision": None}))
    return results.validate({**run, "revision": revision})
