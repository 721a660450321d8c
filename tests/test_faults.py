"""Faults: what happens when things break, and that nothing is lost or half-visible.

- Trainers killed with SIGKILL (real `python -m trainers.lora` / `trainers.ppo` subprocesses) from outside once a
  checkpoint exists, and at the narrow moments a kill from outside rarely hits (tests/faultinject.py: while saving a
  checkpoint, publishing, recording the result), resume when the same command runs again and finish; the store's
  refs/main always names a complete revision, results/ never holds a partial JSON, each run is recorded once.
- A finished run is never overwritten: running the command again makes a new run id and a new store revision, and
  the dashboard shows both runs.
- Store and Hub failures (no network, offline mode, a bad or missing token, a missing repo or revision, a gated repo,
  server errors, corrupted or pickle-only weights) give one line saying what failed and what to do; the local copy
  stays intact and the app keeps serving the slots that loaded. The Hub is a local stub (tests/hubstub.py).
- Config and data mistakes in every command are refused with exit status 2, naming the option, before any model loads.
- The Hub token never appears in logs, model cards, metrics, results or the app's answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import publish_tiny_lora, rows, write_rows
from tests.hubstub import GOOD_TOKEN, HubStub, closed_port_url
from workbench import paths, results, store
from workbench.store import LocalStore, StoreError

SECRET = "hf_SeCrEtTokenThatMustNeverLeak1234"


def subprocess_env(tmp_path: Path, **extra: str) -> dict:
    """The environment of a trainer or app subprocess: the test's store and results, offline, no token, no cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(WORKBENCH_STORE=str(paths.STORE_DIR), WORKBENCH_RESULTS=str(paths.RESULTS_DIR),
               WORKBENCH_RUNS=str(tmp_path / "runs"), WORKBENCH_DEMO_DATA=str(paths.DEMO_DATA_DIR), HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1",
               GRADIO_ANALYTICS_ENABLED="False")
    env.update(extra)
    return env


def run(args: list[str], env: dict, *, fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m <args>`, or with a fault injected (`python -m tests.faultinject <args>`)."""
    cmd = [sys.executable, "-m", *(["tests.faultinject"] if fault else []), *args]
    env = {**env, **({"WORKBENCH_FAULT": fault} if fault else {})}
    return subprocess.run(cmd, cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def kill_when(args: list[str], env: dict, ready, log: Path, timeout: float = 180) -> None:
    """Start `python -m <args>` and SIGKILL it from outside as soon as `ready()` holds."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=paths.REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"exited ({proc.returncode}) before the kill point:\n{log.read_text()[-3000:]}"
            assert time.time() < deadline, "the kill point was never reached"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()  # a failed wait above must not leave it running
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]


def flagged(**options) -> list[str]:
    return [x for key, value in options.items() for x in (f"--{key.replace('_', '-')}", str(value))]


def complete_checkpoints(folder: Path) -> list[int]:
    from trainers import common

    return sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*")
                  if common._complete_checkpoint(p, int(p.name.split("-")[1])))


def visible_records() -> list[str]:
    """Every results/*.json parses and is a valid record (a partial one would fail here); their run ids."""
    found = []
    for path in sorted(paths.RESULTS_DIR.glob("*.json")):
        found.append(results.read(path)["run_id"])
    return found


def assert_head_is_complete(repo: str) -> str:
    """refs/main names a revision whose files are exactly what was published (the hash check) and load."""
    folder = store.resolve(repo)
    store.check_safetensors(folder)
    return folder.name


@pytest.fixture
def family(tiny_model_dir, tmp_store, tmp_path, monkeypatch):
    """A tiny base and LoRA adapter in the test's store, and a tiny DialogSum-style dataset."""
    publish_tiny_lora(tiny_model_dir, tmp_path, sharpen=6.0)
    data_dir = write_rows(tmp_path / "data", rows(8))
    monkeypatch.setattr(paths, "DEMO_DATA_DIR", data_dir)
    return data_dir


# ------------------------------------------------------------------------------------------------ trainers killed


def test_lora_trainer_killed_five_ways_resumes_and_records_once(family, tmp_path):
    output, ckpt = "test/kill-lora", tmp_path / "ckpt-lora"
    LocalStore().publish(tmp_path / "tiny-lora", output)  # last week's adapter: what the app serves meanwhile
    before = LocalStore().head(output)
    args = ["trainers.lora", *flagged(model="test/tiny-base", dataset=family, output=output, max_steps=60,
                                      save_steps=5, batch_size=4, logging_steps=5, learning_rate=1e-2,
                                      precision="fp32", max_new_tokens=8, warmup_ratio=0, checkpoint_dir=ckpt)]
    env = subprocess_env(tmp_path)

    def nothing_visible():
        assert visible_records() == [] and LocalStore().head(output) == before == assert_head_is_complete(output)
        assert not (ckpt / "COMPLETED").exists()

    # 1. SIGKILL from outside once a checkpoint is complete
    kill_when(args, env, lambda: bool(complete_checkpoints(ckpt)), tmp_path / "run1.log")
    nothing_visible()
    run_id = (ckpt / "run_id").read_text().strip()
    last = max(complete_checkpoints(ckpt))
    assert last < 60
    # 2. killed while transformers writes the next checkpoint: half a checkpoint is left behind
    second = run(args, env, fault=f"hf-checkpoint:{last + 5}")
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    assert f"resuming from {ckpt / f'checkpoint-{last}'}" in second.stdout
    assert (ckpt / f"checkpoint-{last + 5}").is_dir() and max(complete_checkpoints(ckpt)) == last
    nothing_visible()
    # 3. killed while the store copies the new revision in: refs/main still names the old, complete revision
    third = run(args, env, fault="publish")
    assert third.returncode == -signal.SIGKILL, third.stderr[-3000:]
    assert f"checkpoint-{last + 5} is incomplete" in third.stdout and f"resuming from {ckpt / f'checkpoint-{last}'}" \
        in third.stdout
    assert list((paths.STORE_DIR / output / "revisions").glob(".tmp-*"))  # the half-copied staging folder...
    assert LocalStore().revisions(output) == [before]  # ... is no revision
    nothing_visible()
    # 4. killed while results/<run_id>.json is written: the new revision is complete and served, no partial JSON
    fourth = run(args, env, fault="record")
    assert fourth.returncode == -signal.SIGKILL, fourth.stderr[-3000:]
    new = assert_head_is_complete(output)
    assert new != before and LocalStore().revisions(output) == [before, new]
    assert not list((paths.STORE_DIR / output / "revisions").glob(".tmp-*"))  # the dead run's staging is cleared
    assert visible_records() == [] and list(paths.RESULTS_DIR.glob(f".{run_id}.json.*.tmp"))
    # 5. the same command again: finishes the run it had started, records it once, publishes nothing new
    fifth = run(args, env)
    assert fifth.returncode == 0, fifth.stderr[-3000:]
    assert visible_records() == [run_id] and not list(paths.RESULTS_DIR.glob(".*.tmp"))
    record = results.read(paths.RESULTS_DIR / f"{run_id}.json")
    assert record["revision"] == new == LocalStore().head(output) and LocalStore().revisions(output) == [before, new]
    assert record["training"]["steps"] == 60 and record["training"]["resumed_from"] == "checkpoint-60"
    log = [json.loads(x) for x in (paths.RESULTS_DIR / record["training"]["log_file"]).read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(5, 61, 5))  # the whole curve, each step once
    assert json.loads((store.resolve(output) / "metrics.json").read_text())["run_id"] == run_id
    assert (ckpt / "COMPLETED").read_text().strip() == run_id


def test_ppo_trainer_killed_from_outside_and_mid_checkpoint_resumes(family, tmp_path):
    output, ckpt = "test/kill-ppo", tmp_path / "ckpt-ppo"
    args = ["trainers.ppo", *flagged(policy="test/tiny-lora", dataset=family, output=output, steps=12, save_steps=2,
                                     batch_size=4, mini_batch_size=2, ppo_epochs=1, max_new_tokens=6,
                                     checkpoint_dir=ckpt)]
    env = subprocess_env(tmp_path)
    kill_when(args, env, lambda: (ckpt / "latest" / "trainer_state.pt").is_file(), tmp_path / "ppo1.log")
    assert not LocalStore().exists(output) and visible_records() == []
    run_id = (ckpt / "run_id").read_text().strip()
    # killed in the middle of swapping in the next checkpoint: `latest` is moved aside, the new one not yet in place
    second = run(args, env, fault="ppo-checkpoint-swap")
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    assert "[ppo] resuming after step" in second.stdout
    assert not (ckpt / "latest").exists() and (ckpt / ".old-latest" / "trainer_state.pt").is_file()
    assert not LocalStore().exists(output) and visible_records() == []
    third = run(args, env)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"from {ckpt / '.old-latest'}" in third.stdout
    assert visible_records() == [run_id]
    record = results.read(paths.RESULTS_DIR / f"{run_id}.json")
    log = [json.loads(x) for x in (paths.RESULTS_DIR / record["training"]["log_file"]).read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))  # every step once: redone steps replace, never repeat
    assert record["training"]["resumed_from_step"] >= 2
    assert record["revision"] == assert_head_is_complete(output)


def test_a_finished_run_is_never_overwritten_and_both_show_on_the_dashboard(tiny_model_dir, tmp_store, tmp_path):
    from trainers import full
    from workbench import app_service

    LocalStore().publish(tiny_model_dir, "test/tiny-base")
    data_dir = write_rows(tmp_path / "data", rows(8))
    argv = flagged(model="test/tiny-base", dataset=data_dir, output="test/versioned", max_steps=4, batch_size=4,
                   logging_steps=2, precision="fp32", max_new_tokens=6, warmup_ratio=0,
                   checkpoint_dir=tmp_path / "ckpt-versioned")
    first = full.main(argv)
    first_file = paths.RESULTS_DIR / f"{first['run_id']}.json"
    first_bytes = first_file.read_bytes()
    second = full.main(argv)  # the same command again: a new run, not a replacement
    assert first["run_id"] != second["run_id"] and first["revision"] != second["revision"]
    assert first_file.read_bytes() == first_bytes
    assert LocalStore().revisions("test/versioned") == [first["revision"], second["revision"]]
    assert LocalStore().head("test/versioned") == second["revision"]
    assert store.resolve("test/versioned", first["revision"]).is_dir()  # the earlier model stays loadable
    table = app_service.dashboard_data(results.list_runs(paths.RESULTS_DIR), results_dir=paths.RESULTS_DIR).runs
    assert sorted(table["run id"]) == sorted([first["run_id"], second["run_id"]])
    assert sorted(table["revision"]) == sorted([first["revision"], second["revision"]])


# ------------------------------------------------------------------------------------------------ store failures


def test_local_store_failures_are_one_line_and_leave_the_store_intact(tiny_model_dir, tmp_store, tmp_path):
    import torch

    good = LocalStore().publish(tiny_model_dir, "test/base")
    # a pickle-only folder is refused on publish and the repo's current revision is untouched
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(StoreError, match="refusing pickle-based weight files .pytorch_model.bin"):
        LocalStore().publish(pickled, "test/base")
    # a model config without safetensors weights is refused too
    (pickled / "pytorch_model.bin").unlink()
    with pytest.raises(StoreError, match="no safetensors weights"):
        LocalStore().publish(pickled, "test/base")
    assert LocalStore().head("test/base") == good and LocalStore().revisions("test/base") == [good]
    # a repo that is neither in the local store nor reachable on the Hub (tests run with HF_HUB_OFFLINE=1)
    with pytest.raises(StoreError, match=r"^demo/not-built@main: not in the local store .* HF_HUB_OFFLINE is set"):
        store.resolve("demo/not-built")
    # unknown revision: names the repo, the revision and what exists
    with pytest.raises(StoreError, match=f"revision 'nope' not found in the local store .known: {good}"):
        store.resolve("test/base", "nope")
    # a flipped bit deep inside the weights: safetensors still parses it, the revision hash does not match
    weights = store.resolve("test/base") / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupted .* publish it again") as err:
        store.resolve("test/base")
    # a truncated file: not a safetensors file at all
    weights.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(StoreError, match="corrupt") as err2:
        store.resolve("test/base")
    for message in (str(err.value), str(err2.value)):
        assert "\n" not in message and "test/base" in message


HUB_SCRIPT = r"""
import json, os, sys
from workbench import store
out = {}
def attempt(name, fn):
    try:
        fn(); out[name] = None
    except store.StoreError as err:
        out[name] = str(err)
for label, token in (("anonymous", None), ("bad-token", os.environ["SECRET"]), ("good-token", os.environ["GOOD"])):
    os.environ.pop("HF_TOKEN", None)
    if token:
        os.environ["HF_TOKEN"] = token
    for repo, rev in (("stub/missing", "main"), ("stub/real", "no-such-revision"), ("stub/gated", "main"),
                      ("stub/down", "main"), ("stub/busy", "main")):
        attempt(f"{label} {repo}@{rev}", lambda: store.HubStore().resolve(repo, rev))
    attempt(f"{label} push", lambda: store.HubStore().publish(sys.argv[1], "stub/push"))
print(json.dumps(out))
"""


def hub_messages(tmp_path: Path, tiny_model_dir: Path, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", HUB_SCRIPT, str(tiny_model_dir)], cwd=paths.REPO_ROOT,
                         env=subprocess_env(tmp_path, SECRET=SECRET, GOOD=GOOD_TOKEN, **env), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert SECRET not in out.stdout + out.stderr
    messages = json.loads(out.stdout.strip().splitlines()[-1])
    for key, message in messages.items():
        assert message and "\n" not in message and len(message) < 300, (key, message)
    return messages


def test_hub_failures_say_what_failed_and_what_to_do(tmp_path, tiny_model_dir):
    with HubStub() as hub:
        m = hub_messages(tmp_path, tiny_model_dir, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
        sent = [auth for _, _, auth in hub.requests]
    assert any(SECRET in auth for auth in sent)  # the bad token really was sent to the (stub) Hub ...
    assert m["anonymous stub/missing@main"].startswith("stub/missing@main: could not load from the Hub: repository "
                                                       "not found, or private")
    assert "hf auth login" in m["anonymous stub/missing@main"]
    assert "revision not found" in m["good-token stub/real@no-such-revision"]
    assert "gated repository: accept its conditions" in m["good-token stub/gated@main"]
    assert "server error (500): retry later" in m["good-token stub/down@main"]
    assert "rate-limited by the Hub (429)" in m["good-token stub/busy@main"]
    assert all("authentication failed: the Hub rejected the token" in v for k, v in m.items() if "bad-token" in k)
    assert m["anonymous push"] == ("push to stub/push failed: authentication required and no Hub token is set: set "
                                   "HF_TOKEN or run `hf auth login`")
    no_net = hub_messages(tmp_path, tiny_model_dir, HF_ENDPOINT=closed_port_url(), HF_HUB_OFFLINE="0")
    assert "is not reachable and the files are not in the local cache" in no_net["good-token stub/missing@main"]
    assert "is not reachable: check the network connection and push again" in no_net["good-token push"]
    offline = hub_messages(tmp_path, tiny_model_dir, HF_HUB_OFFLINE="1")
    assert "HF_HUB_OFFLINE is set and the files are not in the local Hugging Face cache" in \
        offline["anonymous stub/missing@main"]


def test_app_serves_the_slots_that_loaded_and_never_shows_the_token(family, tmp_path, tiny_model_dir):
    """The app in its own process, its Hub a stub that rejects the token (and echoes it back, as no real Hub
    would): the Hub slots are unavailable with the reason, the local ones answer, the token appears nowhere."""
    from gradio_client import Client

    from tests.ui_fixtures import handmade_revision

    handmade_revision(paths.STORE_DIR, "test/pickled", {"config.json": tiny_model_dir / "config.json",
                                                         "pytorch_model.bin": b"\x80\x04pickle"})
    config = tmp_path / "models.yaml"
    config.write_text("base: {ref: test/tiny-base}\nfull: {ref: test/pickled}\nlora: {ref: stub/private-lora}\n"
                      "ppo: {ref: stub/private-ppo, revision: v2}\ntoxicity: hf:stub/private-toxicity\n"
                      "toxicity_fallback: profanity-check\ndtype: fp32\n")
    port = closed_port_url().rsplit(":", 1)[1]
    log = tmp_path / "app.log"
    with HubStub() as hub, open(log, "w") as out:
        env = subprocess_env(tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_TOKEN=SECRET)
        app = subprocess.Popen([sys.executable, "-m", "workbench", "--models", str(config), "--port", port],
                               cwd=paths.REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            client = None
            deadline = time.time() + 120
            while client is None:
                assert app.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                try:
                    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.5)
            status = client.predict(api_name="/status")
            result = client.predict("#Person1#: Can I pay by card?\n#Person2#: Yes.", "", "greedy", 16, 4, 0.7, 0.9,
                                    0, api_name="/compare")
            refreshed = client.predict(api_name="/refresh")
            scored = client.predict("you idiot", api_name="/score")
        finally:
            app.terminate()
            app.wait(timeout=30)
    assert any(SECRET in auth for _, _, auth in hub.requests)
    everything = json.dumps([status, result, refreshed, scored]) + log.read_text()
    assert SECRET not in everything and SECRET[3:] not in everything
    assert status.count("wb-slot-ok") == 1 and status.count("wb-slot-bad") == 3
    assert "refusing pickle-based weight files" in status and "authentication failed" in status
    assert "toxicity scorer: profanity-check" in status  # the Hub scorer failed, its fallback serves
    assert result["ok"] and result["models"]["base"]["text"] is not None
    for slot, reason in (("full", "pickle"), ("lora", "authentication failed"), ("ppo", "authentication failed")):
        entry = result["models"][slot]
        assert not entry["available"] and reason in entry["error"]
    assert scored["ok"] and scored["scorer"] == "profanity-check"


def test_trainer_push_with_a_bad_token_fails_cleanly_and_leaks_nothing(family, tmp_path):
    ckpt = tmp_path / "ckpt-push"
    args = ["trainers.lora", *flagged(model="test/tiny-base", dataset=family, output="test/pushed", max_steps=3,
                                      batch_size=4, logging_steps=1, precision="fp32", max_new_tokens=6,
                                      warmup_ratio=0, checkpoint_dir=ckpt, push_to_hub="stub/pushed")]
    with HubStub() as hub:
        env = subprocess_env(tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_TOKEN=SECRET)
        first = run(args, env)
        again = run(args, env)  # retries the push only: the run is already recorded
    assert sum(SECRET in auth for _, _, auth in hub.requests) >= 2
    for out in (first, again):
        assert out.returncode == 1
        assert "push to stub/pushed failed: authentication failed: the Hub rejected the token" in out.stderr
        assert "Run the same command again to retry the push" in out.stderr
        assert SECRET not in out.stdout + out.stderr and SECRET[3:] not in out.stdout + out.stderr
    assert "already evaluated and published" in again.stdout
    [run_id] = visible_records()
    assert LocalStore().exists("test/pushed") and len(LocalStore().revisions("test/pushed")) == 1
    assert not (ckpt / "COMPLETED").exists()
    for root in (paths.RESULTS_DIR, paths.STORE_DIR, ckpt):
        for path in root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


# ------------------------------------------------------------------------------------------------ config errors


def _cli(module: str):
    """The function `python -m <module>` runs, returning its exit status."""
    import importlib

    from trainers import common

    mod = importlib.import_module(module)
    if module in ("workbench.__main__", "trainers.build_demo"):
        return mod.main
    return lambda argv: common.cli(mod.main, argv)


@pytest.fixture(scope="module")
def config_store(tmp_path_factory, tiny_model_dir):
    """A store with the tiny base and LoRA, and a dataset, built once for the config cases."""
    root = tmp_path_factory.mktemp("config-cases")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(paths, "STORE_DIR", root / "store")
        publish_tiny_lora(tiny_model_dir, root)
    return root


@pytest.fixture
def bad_inputs(config_store, tmp_path, monkeypatch):
    """Data and config files with one thing wrong each; checkpoints go to the test's folder, never to runs/."""
    from trainers import common

    monkeypatch.setattr(common, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(paths, "STORE_DIR", config_store / "store")
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")
    family = write_rows(tmp_path / "data", rows(8))
    empty = tmp_path / "empty-split"
    write_rows(empty, rows(8))
    (empty / "test.jsonl").write_text("")
    no_text = tmp_path / "no-text"
    write_rows(no_text, rows(8))
    (no_text / "train.jsonl").write_text(json.dumps({"fname": "a", "dialogue": "   ", "summary": "s"}) + "\n")
    unknown_key = tmp_path / "unknown.yaml"
    unknown_key.write_text("learning_rate: 0.001\nbatch_sise: 4\n")
    wrong_type = tmp_path / "wrong-type.yaml"
    wrong_type.write_text("max_steps: lots\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"chosen": "a", "rejected": ""}) for _ in range(12)))
    models_unknown = tmp_path / "models-unknown.yaml"
    models_unknown.write_text("base: {ref: demo/x}\ndecoder: {ref: demo/y}\n")
    models_broken = tmp_path / "models-broken.yaml"
    models_broken.write_text("base: {ref: demo/x\nfull: [\n")
    models_dtype = tmp_path / "models-dtype.yaml"
    models_dtype.write_text("base: {ref: demo/x}\ndtype: fp64\n")
    return {"data": str(family), "empty": str(empty), "no_text": str(no_text), "unknown_key": str(unknown_key),
            "wrong_type": str(wrong_type), "pairs": str(pairs), "missing": str(tmp_path / "missing.jsonl"),
            "models_unknown": str(models_unknown), "models_broken": str(models_broken),
            "models_dtype": str(models_dtype), "ckpt": str(tmp_path / "ckpt-config")}


SFT = ["--model", "test/tiny-base", "--dataset", "{data}", "--checkpoint-dir", "{ckpt}"]
PPO_SMALL = ["--batch-size", "4", "--mini-batch-size", "2"]  # the 8-row dataset holds a batch: the policy is the error
CONFIG_CASES = [  # (module, argv, words the one-line message must contain)
    ("trainers.full", ["--config", "{unknown_key}"], ["batch_sise"]),
    ("trainers.full", ["--config", "{wrong_type}"], ["max_steps", "whole number", "lots"]),
    ("trainers.full", ["--learning-rate", "fast"], ["learning_rate", "'fast'"]),
    ("trainers.full", ["--learning-rate", "nan"], ["learning_rate", "finite"]),
    ("trainers.full", ["--config", "{missing}"], ["--config", "not found"]),
    ("trainers.full", [*SFT[:2], "--dataset", "{missing}"], ["dataset / train_split", "not found"]),
    ("trainers.full", [*SFT, "--eval-split", "nope"], ["dataset / eval_split", "no file for split 'nope'"]),
    ("trainers.full", [*SFT[:2], "--dataset", "{empty}"], ["dataset / eval_split", "empty"]),
    ("trainers.full", [*SFT[:2], "--dataset", "{no_text}"], ["dataset / train_split", "line 1", "'dialogue'"]),
    ("trainers.full", [*SFT[2:], "--model", "nobody/nothing"], ["model:", "nobody/nothing", "HF_HUB_OFFLINE"]),
    ("trainers.full", [*SFT[2:], "--model", "../../etc"], ["model:", "../../etc"]),
    ("trainers.full", ["--output", "not a repo"], ["output", "not a valid repo id"]),
    ("trainers.full", ["--push-to-hub", "a/b/c"], ["push_to_hub", "not a valid repo id"]),
    ("trainers.full", ["--toxicity", "perspective"], ["toxicity", "profanity-check or hf:"]),
    ("trainers.lora", ["--lora-dropout", "1.5"], ["lora_dropout"]),
    ("trainers.lora", ["--target-modules", ""], ["target_modules"]),
    ("trainers.ppo", ["--reward", "kindness"], ["reward", "reward-model:"]),
    ("trainers.ppo", ["--mini-batch-size", "3"], ["mini_batch_size", "divide"]),
    ("trainers.ppo", ["--init-kl-coef", "inf"], ["init_kl_coef", "finite"]),
    ("trainers.ppo", ["--policy", "test/tiny-base", "--dataset", "{data}", "--checkpoint-dir", "{ckpt}", *PPO_SMALL],
     ["policy", "not a LoRA adapter"]),
    ("trainers.ppo", ["--policy", "test/none", "--dataset", "{data}", *PPO_SMALL], ["policy:", "test/none"]),
    ("trainers.reward", ["--pairs", "{missing}"], ["pairs", "not found"]),
    ("trainers.reward", ["--pairs", "{pairs}"], ["pairs", "row 0", "'rejected'"]),
    ("trainers.reward", ["--held-out", "1.5"], ["held_out"]),
    ("trainers.evaluate", ["--dtype", "fp64"], ["dtype", "fp64"]),
    ("trainers.evaluate", ["--limit", "0"], ["limit"]),
    ("trainers.evaluate", ["--model", "test/missing", "--dataset", "{data}"], ["model:", "test/missing"]),
    ("trainers.evaluate", ["--method", "magic"], ["method", "magic"]),
    ("trainers.pretrain", ["--vocab-size", "10"], ["vocab_size"]),
    ("trainers.pretrain", ["--dataset", "{missing}"], ["dataset / split", "not found"]),
    ("trainers.pretrain", ["--precision", "fp8"], ["precision", "fp8"]),
    ("trainers.build_demo", ["--steps", "corpus,nonsense"], ["nonsense"]),
    ("workbench.__main__", ["--models", "{missing}"], ["models config not found"]),
    ("workbench.__main__", ["--models", "{models_unknown}"], ["unknown key", "decoder"]),
    ("workbench.__main__", ["--models", "{models_broken}"], ["not valid YAML", "line"]),
    ("workbench.__main__", ["--models", "{models_dtype}"], ["dtype", "fp64"]),
    ("workbench.__main__", ["--port", "http"], ["--port", "http"]),
]


@pytest.mark.parametrize("module, argv, words", CONFIG_CASES,
                         ids=[f"{m.split('.')[-1]}:{' '.join(a)[:40]}" for m, a, _ in CONFIG_CASES])
def test_every_cli_refuses_bad_config_before_loading_a_model(module, argv, words, bad_inputs, monkeypatch, capsys):
    import transformers

    from workbench import modeling

    def no_models(*args, **kwargs):
        raise AssertionError("a model was loaded before the configuration error was reported")

    monkeypatch.setattr(modeling, "load_model", no_models)
    monkeypatch.setattr(transformers.AutoModelForSeq2SeqLM, "from_pretrained", no_models)
    argv = [a.format(**bad_inputs) for a in argv]
    started = time.time()
    try:
        code = _cli(module)(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    elapsed = time.time() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    message = err[-1]
    assert message.startswith(("error:", "usage:")) or ": error:" in message, message
    if module.startswith("trainers."):
        assert err == [message] and message.startswith("error:"), err  # one line: no usage block in front
    for word in words:
        assert word in message, message
    assert elapsed < 15
    print(f"{module} {' '.join(argv)}\n  -> exit {code} in {elapsed:.2f} s: {message}")  # shown with -rP


def test_real_commands_exit_2_fast(bad_inputs, tmp_path):
    env = subprocess_env(tmp_path)
    for args, word in ((["trainers.ppo", "--reward", "kindness"], "reward"),
                       (["trainers.lora", "--dataset", bad_inputs["no_text"], "--model", "test/tiny-base"],
                        "'dialogue'"),
                       (["workbench", "--models", bad_inputs["models_dtype"]], "dtype")):
        started = time.time()
        out = run(args, env, timeout=120)
        assert out.returncode == 2 and word in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]
        assert "Traceback" not in out.stderr
        assert time.time() - started < 60
