"""A small in-memory Hugging Face Hub for tests: the happy path of the protocol `huggingface_hub` speaks, and its
failures, without the internet.

Point huggingface_hub at it with the environment variable HF_ENDPOINT (read when huggingface_hub is imported, so set
it for a subprocess). What it serves, as the Hub does:

    POST /api/repos/create                          create a model/dataset/space repo (409 if it exists); the first
                                                    commit holds .gitattributes, as on the Hub
    POST /api/validate-yaml                         checks a README's YAML front matter (400 with the error if bad)
    POST /api/{type}s/{repo}/preupload/{rev}        upload mode per file: "lfs" for *.safetensors (the Hub's default
                                                    .gitattributes), "regular" otherwise; the oid of an unchanged file
    POST /{repo}.git/info/lfs/objects/batch         LFS batch API ("basic" transfer), then PUT /_lfs/{sha256}
    POST /api/{type}s/{repo}/commit/{rev}           ndjson commit (header, file, lfsFile, deletedFile): a new commit
                                                    sha each time, the branch moves to it
    GET  /api/{type}s/{repo}[/revision/{rev}]       repo info: sha and siblings
    GET  /api/{type}s/{repo}/tree/{rev}[/path]      file listing (recursive or not), /refs, /commits/{rev}
    HEAD/GET /[{type}s/]{repo}/resolve/{rev}/{path} file download with ETag, X-Repo-Commit and Content-Length

It speaks plain LFS, not Xet (hf_xet's storage protocol): clients with hf_xet installed must run with
HF_HUB_DISABLE_XET=1, or use `HubStub(lfs=False)`, a Hub that stores every file as a regular git blob (the client then
uploads everything inline with the commit). Nothing it answers advertises Xet.

Accounts: a request with `Authorization: Bearer GOOD_TOKEN` is user "you", who may write to the namespace "you";
anonymous requests may read. Failures:

    Authorization: Bearer <anything but GOOD_TOKEN>   401 "Invalid credentials in Authorization header" (and, unlike
                                                      the Hub, echoes the token in the body: a leak test)
    writing without a token                           401; writing outside the namespace "you": 403
    stub/gated                                        403 GatedRepo
    any revision named "no-such-revision"             404 RevisionNotFound (any unknown revision of a real repo too)
    stub/down                                         500
    stub/busy                                         429 (rate limit exhausted)
    any repo not created                              404 RepoNotFound

    with HubStub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": GOOD_TOKEN}
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

GOOD_TOKEN = "hf_stubGoodToken000000000000"
USER = "you"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
LFS_PATTERNS = ("*.safetensors", "*.bin")
_ID = r"([^/?]+/[^/?]+)"
_API = re.compile(rf"^/api/(models|datasets|spaces)/{_ID}(?:/(revision|preupload|commit|tree|commits|refs)"
                  r"(?:/([^/?]+))?(/[^?]*)?)?$")
_RESOLVE = re.compile(rf"^/(?:(datasets|spaces)/)?{_ID}/resolve/([^/]+)/(.+)$")
_BATCH = re.compile(rf"^/(?:(datasets|spaces)/)?{_ID}\.git/info/lfs/objects/batch$")
_LFS_PUT = re.compile(r"^/_lfs/([0-9a-f]{64})$")
_FAILING = {"stub/gated", "stub/down", "stub/busy"}


class Answer(Exception):
    """An HTTP answer other than 200 JSON, raised from deep inside a handler."""

    def __init__(self, status: int, body: dict, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _not_found(code: str, message: str, commit: str | None = None) -> Answer:
    headers = {"X-Error-Code": code, "X-Error-Message": message, **({"X-Repo-Commit": commit} if commit else {})}
    return Answer(404, {"error": message}, headers)


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    kind: str  # "model", "dataset" or "space"
    repo_id: str
    lfs: bool
    commits: list[dict] = field(default_factory=list)  # {"id", "title", "date", "files": {path: bytes}}, oldest first
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit id

    def commit(self, files: dict[str, bytes], title: str, branch: str = "main") -> str:
        parent = self.refs.get(branch, "")
        digest = hashlib.sha1(f"{self.repo_id}\n{parent}\n{title}\n{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
        sha = digest.hexdigest()
        self.commits.append({"id": sha, "title": title, "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                             "files": dict(files)})
        self.refs[branch] = sha
        return sha

    def at(self, revision: str) -> dict:
        """The commit a branch name or a full commit id names; 404 RevisionNotFound otherwise."""
        sha = self.refs.get(unquote(revision), revision)
        found = next((c for c in self.commits if c["id"] == sha), None)
        if found is None:
            raise _not_found("RevisionNotFound", f"Invalid rev id: {unquote(revision)}")
        return found

    def is_lfs(self, path: str) -> bool:
        return self.lfs and any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)

    def entry(self, path: str, data: bytes) -> dict:
        """A tree entry as the Hub lists it (LFS files carry their sha256)."""
        out = {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)}
        if self.is_lfs(path):
            out["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return out

    def etag(self, path: str, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest() if self.is_lfs(path) else git_blob_sha(data)


class HubState:
    """Every repo and LFS object the stub holds, behind one lock."""

    def __init__(self, lfs: bool):
        self.lfs = lfs
        self.repos: dict[tuple[str, str], Repo] = {}
        self.objects: dict[str, bytes] = {}  # sha256 -> content (uploaded through the LFS API)
        self.lock = threading.Lock()

    def repo(self, kind: str, repo_id: str) -> Repo:
        if repo_id == "stub/gated":
            message = "Access to model stub/gated is restricted. You must have access to it and be authenticated."
            raise Answer(403, {"error": message}, {"X-Error-Code": "GatedRepo", "X-Error-Message": message})
        if repo_id == "stub/down":
            raise Answer(500, {"error": "Internal Error - We're working hard to fix this as soon as possible!"})
        if repo_id == "stub/busy":
            raise Answer(429, {"error": "Too many requests"},
                         {"RateLimit": '"api";r=0;t=30', "RateLimit-Policy": '"fixed window";"api";q=100;w=300'})
        found = self.repos.get((kind, repo_id))
        if found is None:
            raise _not_found("RepoNotFound", "Repository not found")
        return found


def _kind(segment: str | None) -> str:
    """'models'/'spaces'/'datasets' (API) or 'spaces'/'datasets'/None (URL prefix) -> the repo type."""
    return {"models": "model", "spaces": "space", "datasets": "dataset"}.get(segment or "models", "model")


def _front_matter_error(content: str) -> str | None:
    import yaml

    if not content.startswith("---\n"):
        return None
    end = content.find("\n---", 4)
    if end < 0:
        return "the YAML front matter is not closed with ---"
    try:
        data = yaml.safe_load(content[4:end])
    except yaml.YAMLError as err:
        return f"invalid YAML: {str(err).splitlines()[0]}"
    return None if data is None or isinstance(data, dict) else "the YAML front matter must be a mapping"


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args):  # quiet
        pass

    # ------------------------------------------------------------------------------------------ plumbing

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, data: bytes, headers: dict) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _answer(self, status: int, body, headers: dict | None = None) -> None:
        self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _user(self) -> str | None:
        """The account the request authenticates as (None: anonymous); 401 for a token the stub does not know."""
        auth = self.headers.get("Authorization") or ""
        token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else None
        if token is not None and token != GOOD_TOKEN:
            message = "Invalid credentials in Authorization header"
            raise Answer(401, {"error": message, "errors": [{"message": f"rejected token {token}"}]},
                         {"X-Error-Message": message})
        return USER if token else None

    def _may_write(self, repo_id: str) -> None:
        user = self._user()
        if user is None:
            raise Answer(401, {"error": "You must be authenticated"}, {"X-Error-Message": "Unauthorized"})
        if repo_id.split("/")[0] != user:
            message = f"You don't have the rights to create or write to {repo_id}"
            raise Answer(403, {"error": message}, {"X-Error-Message": message})

    def _handle(self) -> None:
        body = self._body()
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization") or ""))
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._user()
            with self.server.state.lock:
                self._route(url.path, query, body)
        except Answer as answer:
            self._answer(answer.status, answer.body, answer.headers)
        except Exception as err:  # noqa: BLE001 - a request the stub cannot parse: say so instead of hanging up
            self._answer(400, {"error": f"the test Hub could not handle {self.command} {url.path}: {err!r}"})

    do_GET = do_HEAD = do_POST = do_PUT = _handle

    # ------------------------------------------------------------------------------------------ routes

    def _route(self, path: str, query: dict, body: bytes) -> None:
        state = self.server.state
        if path == "/api/whoami-v2":
            if self._user() is None:
                raise Answer(401, {"error": "You must be authenticated"})
            return self._answer(200, {"type": "user", "name": USER, "orgs": []})
        if path == "/api/repos/create" and self.command == "POST":
            return self._create(json.loads(body or b"{}"))
        if path == "/api/validate-yaml" and self.command == "POST":
            error = _front_matter_error(json.loads(body or b"{}").get("content", ""))
            return self._answer(400, {"errors": [{"message": error}]}) if error else self._answer(200, {})
        if "/xet-" in path:
            raise Answer(501, {"error": "this test Hub speaks LFS, not Xet: set HF_HUB_DISABLE_XET=1 or use "
                                        "HubStub(lfs=False)"})
        if m := _LFS_PUT.match(path):
            if hashlib.sha256(body).hexdigest() != m.group(1):
                raise Answer(400, {"error": "the uploaded content does not match its sha256"})
            state.objects[m.group(1)] = body
            return self._answer(200, {})
        if m := _BATCH.match(path):
            self._may_write(m.group(2))
            return self._lfs_batch(state.repo(_kind(m.group(1)), m.group(2)), json.loads(body))
        if m := _RESOLVE.match(path):
            return self._download(state.repo(_kind(m.group(1)), m.group(2)), m.group(3), unquote(m.group(4)))
        if m := _API.match(path):
            return self._api(m.groups(), query, body)
        raise _not_found("RepoNotFound", "Repository not found")

    def _api(self, groups: tuple, query: dict, body: bytes) -> None:
        segment, repo_id, action, revision, rest = groups
        if revision == "no-such-revision":
            raise _not_found("RevisionNotFound", "Invalid rev id")
        repo = self.server.state.repo(_kind(segment), repo_id)
        if action in (None, "revision") and self.command in ("GET", "HEAD"):
            return self._info(repo, repo.at(revision or "main"))
        if action == "preupload" and self.command == "POST":
            self._may_write(repo_id)
            return self._preupload(repo, revision, json.loads(body))
        if action == "commit" and self.command == "POST":
            self._may_write(repo_id)
            return self._commit(repo, unquote(revision), body)
        if action == "tree":
            return self._tree(repo, repo.at(revision), unquote(rest or "").strip("/"), query.get("recursive") in
                              ("1", "true", "True"))
        if action == "refs":
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.refs.items()]
            return self._answer(200, {"branches": branches, "tags": [], "converts": []})
        if action == "commits":
            head = repo.at(revision)
            history = repo.commits[: repo.commits.index(head) + 1][::-1]
            return self._answer(200, [{"id": c["id"], "title": c["title"], "message": "", "date": c["date"],
                                       "authors": [{"user": USER}]} for c in history])
        raise Answer(405, {"error": f"{self.command} {action} is not supported by the stub"})

    def _create(self, payload: dict) -> None:
        name, org = payload.get("name", ""), payload.get("organization")
        repo_id = f"{org}/{name}" if org else f"{USER}/{name}"
        self._may_write(repo_id)
        kind = payload.get("type") or "model"
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[kind]
        url = f"{self.server.url}/{prefix}{repo_id}"
        if (kind, repo_id) in self.server.state.repos:
            raise Answer(409, {"error": "You already created this repo", "url": url})
        repo = Repo(kind, repo_id, lfs=self.server.state.lfs)
        repo.commit({".gitattributes": GITATTRIBUTES}, "initial commit")
        self.server.state.repos[(kind, repo_id)] = repo
        self._answer(200, {"url": url, "name": repo_id, "id": repo_id})

    def _info(self, repo: Repo, commit: dict) -> None:
        siblings = []
        for path, data in sorted(commit["files"].items()):
            entry = repo.entry(path, data)
            sibling = {"rfilename": path, "size": len(data), "blobId": entry["oid"]}
            if "lfs" in entry:
                sibling["lfs"] = {"sha256": entry["lfs"]["oid"], "size": len(data), "pointerSize": 134}
            siblings.append(sibling)
        self._answer(200, {"id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit["id"],
                           "private": False, "lastModified": commit["date"], "siblings": siblings, "tags": []})

    def _preupload(self, repo: Repo, revision: str, payload: dict) -> None:
        files = repo.at(revision)["files"]
        answer = []
        for item in payload.get("files", []):
            path = item["path"]
            mode = "lfs" if repo.is_lfs(path) and item.get("size", 0) > 0 else "regular"
            oid = repo.etag(path, files[path]) if path in files else None
            answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._answer(200, {"files": answer, "commitOid": repo.at(revision)["id"]})

    def _lfs_batch(self, repo: Repo, payload: dict) -> None:
        objects = []
        for obj in payload.get("objects", []):
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.server.state.objects:
                item["actions"] = {"upload": {"href": f"{self.server.url}/_lfs/{obj['oid']}"}}
            objects.append(item)
        data = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        self._send(200, data, {"Content-Type": "application/vnd.git-lfs+json"})

    def _commit(self, repo: Repo, branch: str, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise Answer(400, {"error": "the commit payload must start with a header line"})
        header = lines[0]["value"]
        current = repo.at(branch)
        if header.get("parentCommit") not in (None, current["id"]):
            raise Answer(412, {"error": f"the parent commit is not the head of {branch}"})
        files = dict(current["files"])
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.server.state.objects:
                    raise Answer(422, {"error": f"LFS object {value['oid']} for {value['path']} was never uploaded"})
                files[value["path"]] = self.server.state.objects[value["oid"]]
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise Answer(400, {"error": f"unknown commit operation {key!r}"})
        sha = repo.commit(files, header.get("summary", ""), branch)
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo.kind]
        self._answer(200, {"commitUrl": f"{self.server.url}/{prefix}{repo.repo_id}/commit/{sha}", "commitOid": sha,
                           "success": True, "pullRequestUrl": None})

    def _tree(self, repo: Repo, commit: dict, under: str, recursive: bool) -> None:
        prefix = f"{under}/" if under else ""
        entries, folders = [], set()
        for path, data in sorted(commit["files"].items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(repo.entry(path, data))
        if under and not entries and not folders:
            raise _not_found("EntryNotFound", f"{under} does not exist on {commit['id']}", commit["id"])
        entries += [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()} for f in folders]
        self._answer(200, sorted(entries, key=lambda e: e["path"]))

    def _download(self, repo: Repo, revision: str, path: str) -> None:
        commit = repo.at(revision)
        if path not in commit["files"]:
            raise _not_found("EntryNotFound", f"{path} does not exist on {commit['id']}", commit["id"])
        data = commit["files"][path]
        etag = repo.etag(path, data)
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{etag}"', "X-Repo-Commit": commit["id"],
                   "Content-Length": str(len(data)), "Accept-Ranges": "none"}
        if repo.is_lfs(path):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        self._send(200, data, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list
    state: HubState
    url: str


class HubStub:
    """Serves on a free local port while the `with` block runs; `requests` records (method, path, authorization).
    `lfs=False`: store every file as a regular git blob (for clients that would upload LFS files with Xet)."""

    def __init__(self, *, lfs: bool = True):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.requests = []
        self.server.state = HubState(lfs)
        self.url = self.server.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list:
        return self.server.requests

    def repo(self, repo_id: str, kind: str = "model") -> Repo:
        """A repo's state (commits, refs, files), to check what a client pushed."""
        return self.server.state.repos[(kind, repo_id)]

    def __enter__(self) -> "HubStub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """An endpoint where nothing listens: connections are refused at once (no network)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class SilentEndpoint:
    """An endpoint that accepts connections and never answers: a network that drops packets, where a client without
    a timeout waits forever. `with SilentEndpoint() as url:`"""

    def __enter__(self) -> str:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)  # the kernel completes the handshakes; nobody ever reads or writes
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __exit__(self, *exc) -> None:
        self._sock.close()
