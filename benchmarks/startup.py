"""Start-up: from launching `python -m workbench --models CONFIG --port PORT` to the first answered Compare request.

The app is started as a subprocess, exactly as a user or a Space starts it; the clock runs until
`gradio_client.Client(url).predict(dialogue, "", "greedy", 64, 4, 0.7, 0.9, 0, api_name="/compare")` returns
(the median-length DialogSum test dialogue). Milestones come from the app's own log lines as they arrive:
models loaded, app built, port listening, first answer. Two families: the committed demo family
(configs/models/demo.yaml; a slot that is missing, e.g. mid-rebuild, is reported) and the FLAN-T5-base-architecture
family. There is no naive counterpart, so this measure has no goal; it shows where start-up time goes.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import median

from benchmarks.common import Result, free_port
from benchmarks.load import stop_process
from workbench.store import shown_path
from workbench import paths
from workbench.modelset import DEFAULT_CONFIG, SLOTS

TIMEOUT_S = 600
MILESTONES = {"models_loaded_s": re.compile(r"models loaded in"), "app_built_s": re.compile(r"\] ready in")}


def run(bench) -> Result:
    dialogue = bench.family.median_row()["dialogue"]
    families = {"demo": (DEFAULT_CONFIG, None), "flan-t5-base-arch": (bench.family.models_config, bench.family.env())}
    rows = []
    for name, (config, env) in families.items():
        for rep in range(bench.reps(1, full_min=1)):
            rows.append({"family": name, "rep": rep + 1, **launch_and_ask(config, env, dialogue)})
    base = [r["first_compare_s"] for r in rows if r["family"] == "flan-t5-base-arch"]
    demo = [r["first_compare_s"] for r in rows if r["family"] == "demo"]
    notes = [f"{r['family']} (run {r['rep']}): models loaded {r['models_loaded_s']:.1f} s, app built "
             f"{r['app_built_s']:.1f} s, listening {r['listening_s']:.1f} s, first Compare answered "
             f"{r['first_compare_s']:.1f} s (the compare itself {r['compare_wall_s']:.1f} s)"
             + (f"; unavailable: {', '.join(r['unavailable'])}" if r["unavailable"] else "") for r in rows]
    return Result("startup", "Start-up: launch to first Compare answer", "s", median(demo), median(base), None, None,
                  rows=rows, notes=notes,
                  details={"columns": "naive = demo family, ours = FLAN-T5-base architecture (no naive path)"})


def launch_and_ask(config: Path, env: dict | None, dialogue: str) -> dict:
    from gradio_client import Client

    port = free_port()
    marks: dict[str, float] = {}
    log: list[str] = []
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "--models", str(config), "--port", str(port)],
                            env=env, cwd=paths.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    reader = threading.Thread(target=_read, args=(proc, start, marks, log), daemon=True)
    reader.start()
    try:
        _wait_for_port(proc, port, log)
        marks["listening_s"] = time.perf_counter() - start
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False, download_files=False)
        answer = client.predict(dialogue, "", "greedy", 64, 4, 0.7, 0.9, 0, api_name="/compare")
        marks["first_compare_s"] = time.perf_counter() - start
    finally:
        stop_process(proc)
    if not answer.get("ok"):
        raise RuntimeError(f"compare refused: {answer.get('message')}")
    unavailable = [f"{slot} ({answer['models'][slot]['error']})" for slot in SLOTS
                   if not answer["models"][slot]["available"]]
    return {**{k: round(v, 2) for k, v in marks.items()}, "compare_wall_s": answer["wall_time_s"],
            "unavailable": unavailable, "config": shown_path(config)}


def _read(proc, start: float, marks: dict, log: list) -> None:
    for line in proc.stdout:
        log.append(line.rstrip())
        for key, pattern in MILESTONES.items():
            if key not in marks and pattern.search(line):
                marks[key] = time.perf_counter() - start


def _wait_for_port(proc, port: int, log: list) -> None:
    deadline = time.perf_counter() + TIMEOUT_S
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}: {' | '.join(log[-5:])}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the app did not listen on port {port} within {TIMEOUT_S} s")

