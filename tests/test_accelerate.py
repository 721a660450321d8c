"""The trainers under `accelerate launch` with two CPU processes (gloo), as the README shows it: they train, and the
main process alone evaluates, records and publishes once. (tests/test_distributed.py does the same with torchrun.)"""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import publish_tiny_lora, rows, write_rows
from workbench import paths, results
from workbench.store import LocalStore


@pytest.fixture
def family(tiny_model_dir, tmp_store, tmp_path):
    publish_tiny_lora(tiny_model_dir, tmp_path, sharpen=6.0)
    return write_rows(tmp_path / "data", rows(8))


def accelerate_launch(module: str, args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_STORE": str(tmp_path / "store"), "WORKBENCH_RESULTS": str(tmp_path / "results"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HOME": str(tmp_path / "hf-home")}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(port), "-m", module, *args]
    return subprocess.run(cmd, cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("module, args, steps", [
    ("trainers.lora", ["--model", "test/tiny-base", "--max-steps", "4", "--batch-size", "2", "--logging-steps", "2",
                       "--precision", "fp32", "--max-new-tokens", "6"], 4),
    ("trainers.ppo", ["--policy", "test/tiny-lora", "--steps", "2", "--batch-size", "4", "--mini-batch-size", "2",
                      "--ppo-epochs", "1", "--max-new-tokens", "6"], 2),
])
def test_trainer_under_accelerate_launch_with_two_processes(family, tmp_path, module, args, steps):
    output = f"test/accelerate-{module.split('.')[-1]}"
    out = accelerate_launch(module, [*args, "--dataset", str(family), "--output", output,
                                     "--checkpoint-dir", str(tmp_path / "ckpt")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    [record] = [results.read(p) for p in (tmp_path / "results").glob("*.json")]  # one record, from the main process
    assert record["training"]["processes"] == 2 and record["training"]["steps"] == steps
    assert record["revision"] == LocalStore().head(output) and len(LocalStore().revisions(output)) == 1
    log = [json.loads(x) for x in (tmp_path / "results" / record["training"]["log_file"]).read_text().splitlines()]
    assert log and all(r["step"] <= steps for r in log)
