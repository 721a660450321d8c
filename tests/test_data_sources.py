"""Where a --dataset comes from is decided up front, and every failure is fast and says what works instead."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workbench import data, paths


@pytest.fixture
def no_dataset_loading(monkeypatch):
    """Fail the test if a source reaches datasets.load_dataset (the slow path with retries)."""
    import datasets

    def refuse(*args, **kwargs):
        raise AssertionError(f"datasets.load_dataset called with {args}")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


@pytest.fixture
def online(monkeypatch):
    """As if HF_HUB_OFFLINE were unset (huggingface_hub reads it at import, so patch the constant)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    return lambda endpoint: monkeypatch.setattr(constants, "ENDPOINT", endpoint)


def test_a_name_without_slash_that_does_not_exist_fails_at_once_with_suggestions(tmp_path, monkeypatch,
                                                                                  no_dataset_loading):
    (tmp_path / "my_dialogues").mkdir()
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with pytest.raises(data.DataError) as err:
        data.load_dialogues("my_dialogue", "train")
    assert time.monotonic() - started < 1
    message = str(err.value)
    assert "no such local file or folder" in message and "owner/name" in message
    assert "available: demo" in message and "my_dialogues" in message
    with pytest.raises(data.DataError, match="nonexistent_dir: no such local file or folder"):
        data.load_dialogues("nonexistent_dir", "train")


def test_suggestions_list_dialogsum_local_only_where_it_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHARED_DIALOGSUM", tmp_path / "absent")
    with pytest.raises(data.DataError) as err:
        data.resolve_source("nonexistent_dir", "train")
    assert data.SHARED not in str(err.value)
    (tmp_path / "absent").mkdir()
    with pytest.raises(data.DataError, match=f"available: demo, {data.SHARED}"):
        data.resolve_source("nonexistent_dir", "train")


def test_dialogsum_local_train_split_offers_dev(tmp_path, monkeypatch):
    folder = tmp_path / "dialogsum"
    folder.mkdir()
    for split in ("dev", "test"):
        (folder / f"dialogsum.{split}.jsonl").write_text(json.dumps({"dialogue": "#Person1#: hi", "summary": "s"}))
    monkeypatch.setattr(paths, "SHARED_DIALOGSUM", folder)
    with pytest.raises(data.DataError, match="has no train split .* --train-split dev"):
        data.load_dialogues(data.SHARED, "train")
    assert len(data.load_dialogues(data.SHARED, "dev")) == 1
    with pytest.raises(data.DataError, match="no file for split 'nope'"):
        data.load_dialogues(data.SHARED, "nope")


def test_paths_and_hub_ids_are_told_apart_without_the_network(tmp_path, monkeypatch):
    (tmp_path / "owner" / "name").mkdir(parents=True)
    (tmp_path / "owner" / "name" / "test.jsonl").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert data.resolve_source("owner/name", "test").resolve() == tmp_path / "owner" / "name" / "test.jsonl"
    assert data.resolve_source("someone/dataset", "test") == "someone/dataset"
    with pytest.raises(data.DataError, match="file not found"):
        data.resolve_source("./missing", "test")
    with pytest.raises(data.DataError, match="not a Hub dataset id"):
        data.resolve_source("a/b/c", "test")


def test_unreachable_hub_fails_in_under_5_seconds(online, no_dataset_loading):
    online("http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    with pytest.raises(data.DataError) as err:
        data.load_dialogues("knkarthick/dialogsum", "test")
    assert time.monotonic() - started < 5
    message = str(err.value)
    assert "the Hugging Face Hub (http://127.0.0.1:9) is unreachable" in message
    assert "offline, use demo" in message and "HF_HUB_OFFLINE=1" in message


def test_a_hub_that_never_answers_fails_in_under_5_seconds(online, no_dataset_loading):
    with socket.socket() as silent:  # accepts connections (kernel backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        online(f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(data.DataError, match="is unreachable"):
            data.load_dialogues("knkarthick/dialogsum", "test")
        assert time.monotonic() - started < 5


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps({"error": "Repository not found"}).encode()
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_missing_hub_dataset_is_named_and_suggestions_given(online, no_dataset_loading):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        online(f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(data.DataError, match="someone/missing: no such Hub dataset .* available: demo"):
            data.load_dialogues("someone/missing", "test")
    finally:
        server.shutdown()
        server.server_close()


def test_offline_mode_skips_the_probe_and_fails_fast_without_a_cached_copy(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(data, "check_hub_dataset", lambda repo_id: pytest.fail("probed the Hub while offline"))
    started = time.monotonic()
    with pytest.raises(data.DataError) as err:
        data.load_dialogues("workbench-tests/never-cached", "test")
    assert time.monotonic() - started < 5
    assert "not in the local datasets cache and the Hub is off (HF_HUB_OFFLINE is set)" in str(err.value)
    assert "offline, use demo" in str(err.value)


def test_hf_endpoint_from_the_environment_is_probed_in_a_fresh_process():
    """End to end as a user runs it: HF_HUB_OFFLINE unset, HF_ENDPOINT pointing nowhere, read at import."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    script = ("import json, time\nfrom workbench import data\nt = time.monotonic()\n"
              "try:\n    data.load_dialogues('knkarthick/dialogsum', 'test')\n"
              "except data.DataError as err:\n    print(json.dumps([time.monotonic() - t, str(err)]))\n")
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=paths.REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    elapsed, message = json.loads(out.stdout.strip().splitlines()[-1])
    assert elapsed < 5 and "(http://127.0.0.1:9) is unreachable" in message


def test_a_hanging_name_lookup_still_fails_in_under_5_seconds(online, monkeypatch, no_dataset_loading):
    """The HTTP client's timeout does not cover DNS; a dead resolver must not stall the loader."""
    release = threading.Event()

    def hanging_lookup(*args, **kwargs):
        release.wait(30)
        raise socket.gaierror("released")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    online("http://hub.invalid")
    started = time.monotonic()
    try:
        with pytest.raises(data.DataError, match=r"\(http://hub.invalid\) is unreachable \(TimeoutError\)"):
            data.load_dialogues("knkarthick/dialogsum", "test")
        assert time.monotonic() - started < 5
    finally:
        release.set()
