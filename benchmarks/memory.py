"""Resident memory of the loaded four-model set, each configuration in a fresh subprocess (benchmarks/probe.py).

naive  four separately loaded fp32 models (base, full, base+LoRA, base+PPO), after one compare.
ours   the app's ModelSet (dtype auto): one base copy carrying both adapters + the full model, after one compare;
       an extra row loads it in bf16 instead of auto (int8 weights).
Goal: ours ≤ 2.3 × a single fp32 base model (after one generation). RSS includes the interpreter and libraries;
the bare python + torch row shows that floor, and the net column subtracts it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Goal, Result
from workbench import paths, prompts

GOAL = Goal("ours / single fp32 base (RSS)", "<=", 2.3)
KINDS = ("torch", "single", "naive", "ours", "ours-bf16")


def run(bench) -> Result:
    family = bench.family
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write(prompts.zero_shot(family.median_row()["dialogue"]))
    try:
        probes = {kind: probe(kind, Path(handle.name), family.models_config, family.env()) for kind in KINDS}
    finally:
        Path(handle.name).unlink()
    floor = probes["torch"]["after_import"]
    rows = [{"variant": kind, **{k: v for k, v in p.items() if k != "kind"},
             "net_after_compare": round(p.get("after_compare", p["after_import"]) - floor, 1)}
            for kind, p in probes.items()]
    single, naive, ours = (probes[k]["after_compare"] for k in ("single", "naive", "ours"))
    notes = [f"single fp32 base {single:,.0f} MB; bare python+torch {floor:,.0f} MB; "
             f"net of that floor: ours/single = {(ours - floor) / (single - floor):.2f}×, "
             f"naive/ours = {naive / ours:.2f}×"]
    return Result("memory", "Memory: 4-model set, RSS after a compare", "MB", naive, ours, ours / single, GOAL,
                  rows=rows, notes=notes, details={"probes": probes})


def probe(kind: str, prompt_file: Path, config: Path, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.probe", kind, str(prompt_file), str(config)],
                          env=env, cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {kind} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
