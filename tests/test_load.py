"""`python -m benchmarks.load` end to end on the tiny family, for a few seconds: it launches the app, computes the
single-user outputs, loads it with concurrent users, checks every answer against them and writes its report.
(The real measurement runs on the demo family for two minutes: `make load`.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import ui_fixtures as uf
from workbench import paths


def test_load_benchmark_runs_and_finds_no_crosstalk(tmp_path, tiny_tokenizer, tiny_model_dir):
    store_dir = uf.build_family(tmp_path, tiny_tokenizer, tiny_model_dir)
    data_dir = uf.write_dataset(tmp_path / "data")
    config = uf.write_config(tmp_path / "models.yaml")
    out = tmp_path / "load.json"
    env = {**os.environ, "WORKBENCH_STORE": str(store_dir), "WORKBENCH_DEMO_DATA": str(data_dir),
           "WORKBENCH_RESULTS": str(tmp_path / "results"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.load", "--models", str(config), "--users", "4",
                           "--seconds", "5", "--dialogues", "5", "--client-processes", "2",
                           "--out", str(out)], cwd=paths.REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    load = report["load"]
    assert load["passed"] and load["mismatch"] == 0 and load["error"] == 0 and load["rejected"] == 0
    assert load["requests"] == load["ok"] >= 4
    assert 0 < load["latency_s"]["p50"] <= load["latency_s"]["p95"] <= load["latency_s"]["max"]
    assert load["throughput_rps"] > 0
    assert len(report["single_user"]["outputs"]) == 5
    assert all(isinstance(o["lora"], str) for o in report["single_user"]["outputs"])
    assert len(report["rss_mb_over_time"]) >= 3 and load["memory"]["max_mb"] > 50
    assert "identical to single-user" in done.stdout and "latency p50" in done.stdout
    # both servers, side by side: the unbatched one (WORKBENCH_MAX_BATCH=1) and the app's micro-batching default
    assert set(report["variants"]) == {"unbatched", "batched"}
    assert report["variants"]["unbatched"]["environment"] == {"WORKBENCH_MAX_BATCH": "1"}
    assert all(v["load"]["passed"] and v["load"]["mismatch"] == 0 for v in report["variants"].values())
    comparison = report["comparison"]
    assert comparison["same_answers_both_servers"] is True and comparison["throughput_ratio"] > 0
    assert comparison["goals"] == {"throughput_ratio": 3.0, "p95_s": 2.0}
    assert report["settings"]["client_processes"] == 2  # 4 users as threads of 2 spawned client processes
    assert {r["user"] for r in report["failures"]} <= set(range(4))
    machine = report["machine"]
    assert machine["cpu_kind"] in ("avx512_bf16", "avx2", "basic") and "avx2" in machine["cpu_flags"]
    assert "batched / unbatched throughput" in done.stdout and str(tmp_path) not in json.dumps(report["machine"])


def test_the_engine_variant_is_judged_against_the_unbatched_server(tmp_path):
    """`--variants ...,ctranslate2` serves the same models config with engine: ctranslate2, and the comparison judges
    it against the unbatched PyTorch server with the same goals (its answers are its own: not compared to torch's)."""
    import yaml

    from benchmarks import load

    config = tmp_path / "models.yaml"
    config.write_text("base: {ref: demo/flan-t5-demo-base}\ndtype: auto\n")
    derived = yaml.safe_load(open(load.variant_models(str(config), "ctranslate2")))
    assert derived == {"base": {"ref": "demo/flan-t5-demo-base"}, "dtype": "auto", "engine": "ctranslate2"}
    assert load.variant_models(str(config), "batched") == str(config)

    def variant(rps, p95, reference):
        return {"load": {"throughput_rps": rps, "latency_s": {"p95": p95}, "passed": True}, "reference": reference}

    cmp = load.comparison({"unbatched": variant(1.0, 20.0, ["a"]), "batched": variant(4.0, 6.0, ["a"]),
                           "ctranslate2": variant(9.0, 1.8, ["b"])})
    assert cmp["throughput_ratio"] == 4.0 and cmp["met"] is False and cmp["same_answers_both_servers"] is True
    assert cmp["ctranslate2"] == {"throughput_ratio": 9.0, "p95_s": 1.8, "met": True}
    assert load.comparison({"batched": variant(4.0, 6.0, ["a"])}) is None
