"""The trainers run unchanged with several processes (torchrun, gloo on CPU): they train, one result set is written by
the main process, and every process lets go of its data-parallel wrappers before it leaves the process group (one
alive until interpreter shutdown held gloo's threads there, and a worker now and then died with SIGABRT at exit)."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import publish_tiny_lora, rows, write_rows
from tests.distributed_probe import REPORT
from workbench import paths, results
from workbench.store import LocalStore


def torchrun(module: str, args: list[str], tmp_path, timeout: int = 240) -> subprocess.CompletedProcess:
    """The trainer `module` under torchrun with two processes, each run through tests/distributed_probe.py."""
    env = {**os.environ, "WORKBENCH_STORE": str(tmp_path / "store"), "WORKBENCH_RESULTS": str(tmp_path / "results"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "tests/distributed_probe.py", module, *args]
    return subprocess.run(cmd, cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def family(tiny_model_dir, tmp_store, tmp_path):
    publish_tiny_lora(tiny_model_dir, tmp_path, sharpen=6.0)
    return write_rows(tmp_path / "data", rows(8))


def test_lora_trainer_with_two_processes(family, tmp_path):
    out = torchrun("trainers.lora", ["--model", "test/tiny-base", "--dataset", str(family), "--output", "test/ddp-lora",
                                     "--max-steps", "6", "--batch-size", "2", "--logging-steps", "2",
                                     "--precision", "fp32", "--max-new-tokens", "6", "--learning-rate", "5e-3",
                                     "--checkpoint-dir", str(tmp_path / "ckpt")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count(f"{REPORT} 0") == 2, out.stderr[-3000:]
    runs = list((tmp_path / "results").glob("lora-*.json"))
    assert len(runs) == 1  # the main process alone evaluates and writes
    run = results.read(runs[0])
    assert run["training"]["processes"] == 2 and run["training"]["steps"] == 6
    log = [json.loads(x) for x in (tmp_path / "results" / run["training"]["log_file"]).read_text().splitlines()]
    assert len(log) == 3 and all(r["loss"] > 0 for r in log)
    assert LocalStore().revisions("test/ddp-lora") and len(LocalStore().revisions("test/ddp-lora")) == 1


def test_ppo_trainer_with_two_processes(family, tmp_path):
    out = torchrun("trainers.ppo", ["--policy", "test/tiny-lora", "--dataset", str(family), "--steps", "2",
                                    "--batch-size", "4", "--mini-batch-size", "2", "--ppo-epochs", "1",
                                    "--max-new-tokens", "6", "--output", "test/ddp-ppo",
                                    "--checkpoint-dir", str(tmp_path / "ckpt-ppo")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count(f"{REPORT} 0") == 2, out.stderr[-3000:]
    runs = list((tmp_path / "results").glob("ppo-*.json"))
    assert len(runs) == 1
    run = results.read(runs[0])
    assert run["training"]["processes"] == 2
    log = [json.loads(x) for x in (tmp_path / "results" / run["training"]["log_file"]).read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert LocalStore().exists("test/ddp-ppo")


def test_the_other_trainers_with_two_processes_publish_once(family, tmp_path):
    """Pretraining, the reward model and ORPO under torchrun: before, every process went on to publish after
    training (pretraining, the reward model), or the workers left the process group before ORPO's held-out
    evaluation gathered from them and the run failed."""
    from workbench import corpus, preferences
    from workbench.io import atomic_write_jsonl

    for row in rows(8):
        preferences.record_vote("test/ddp-prefs", dialogue=row["dialogue"], prompt=f"Summarize: {row['dialogue']}",
                                outputs={"a": ("m/ref", "r1", row["summary"]),
                                         "b": ("m/rude", "r2", "You idiot, " + row["summary"])},
                                best="a", voter="test")
    atomic_write_jsonl(tmp_path / "pairs.jsonl", corpus.preference_pairs(40, seed=3))
    runs = {  # the run ids begin with the method the record names: pretraining makes a "base"
        "base": ["--dataset", str(family), "--output", "test/ddp-base", "--max-steps", "2", "--batch-size", "2",
                     "--vocab-size", "300", "--extra-dialogues", "0", "--eval-limit", "2", "--max-new-tokens", "3"],
        "reward": ["--pairs", str(tmp_path / "pairs.jsonl"), "--tokenizer", "test/tiny-base", "--output",
                   "test/ddp-reward", "--hidden-size", "32", "--layers", "1", "--max-steps", "4", "--batch-size", "4"],
        "orpo": ["--policy", "test/tiny-lora", "--preferences", "test/ddp-prefs", "--dataset", str(family),
                 "--max-steps", "2", "--batch-size", "2", "--max-new-tokens", "6", "--eval-batch-size", "8",
                 "--precision", "fp32", "--held-out", "0.25", "--output", "test/ddp-orpo"],
    }
    for method, args in runs.items():
        module = {"base": "trainers.pretrain", "orpo": "trainers.preference"}.get(method, f"trainers.{method}")
        out = torchrun(module, [*args, "--checkpoint-dir", str(tmp_path / f"ckpt-{method}")], tmp_path)
        assert out.returncode == 0, (method, out.stderr[-3000:])
        assert out.stderr.count(f"{REPORT} 0") == 2, (method, out.stderr[-3000:])
        assert len(list((tmp_path / "results").glob(f"{method}-*.json"))) == 1, method  # the main process alone
        output = args[args.index("--output") + 1]
        assert len(LocalStore().revisions(output)) == 1, method
    orpo = results.read(next((tmp_path / "results").glob("orpo-*.json")))
    assert orpo["training"]["held_out"]["n_pairs"] == 2  # evaluated by both processes together, recorded once
