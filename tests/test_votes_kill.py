"""A vote whose request returned survives a SIGKILL of the server right after: the app runs in a subprocess on tiny
models, a client compares and votes, the server is killed at once, and datasets.load_dataset reads the vote back.

Run as a module (`python -m tests.test_votes_kill ROOT`) it is that server: it serves the tiny family in ROOT and
prints its URL.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests import ui_fixtures as uf
from tests.conftest import DIALOGUES
from workbench import paths

COMPARE_DEFAULTS = dict(decoding="greedy", max_new_tokens=32, num_beams=4, temperature=0.7, top_p=0.9, seed=0)


def serve(root: Path) -> None:
    """The server: the family, data and config in `root` (built by the test), votes to local/votes in its store."""
    paths.STORE_DIR, paths.DEMO_DATA_DIR = root / "store", root / "data"
    paths.RESULTS_DIR, paths.SHARED_DIALOGSUM = root / "results", root / "no-dialogsum"
    from workbench.app_service import WorkbenchService
    from workbench.modelset import ModelSet, ModelSetConfig
    from workbench.ui import build_app, launch_kwargs

    models = ModelSet(ModelSetConfig.load(root / "models.yaml"), device="cpu")
    demo = build_app(WorkbenchService(models, results_dir=root / "results"))
    demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", **launch_kwargs())
    print(f"URL {demo.local_url}", flush=True)
    while True:
        time.sleep(3600)


def first_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, f"the server exited with {proc.returncode}"
            continue
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise AssertionError(f"the server printed no {prefix!r} line in {timeout} s")


def test_a_returned_vote_is_on_disk_after_sigkill(tmp_path, tiny_tokenizer, tiny_model_dir):
    import datasets
    from gradio_client import Client

    uf.build_family(tmp_path, tiny_tokenizer, tiny_model_dir)
    uf.write_dataset(tmp_path / "data")
    uf.write_config(tmp_path / "models.yaml")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.test_votes_kill", str(tmp_path)], cwd=paths.REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        client = Client(first_line(proc, "URL ", 120), verbose=False)
        result = client.predict(DIALOGUES[0][0], "", *COMPARE_DEFAULTS.values(), api_name="/compare")
        assert result["ok"], result
        answer = client.predict("base", [], "Tom asks Ann to play tennis on Saturday; she agrees.", api_name="/vote")
        proc.send_signal(signal.SIGKILL)  # the moment the vote's request returned
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answer["ok"], answer
    data = tmp_path / "store" / "datasets" / "local" / "votes" / "data" / "pairs.jsonl"
    saved = datasets.load_dataset("json", data_files=str(data), split="train")
    assert set(saved["vote_id"]) == {answer["vote_id"]} and len(saved) == answer["pairs"] >= 1
    assert set(saved["chosen"]) >= {"Tom asks Ann to play tennis on Saturday; she agrees."}
    assert set(saved["rejected_model"]) <= set(uf.REPOS.values())


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
