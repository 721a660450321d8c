"""The Hub round trip with the real `huggingface_hub` client against an in-memory Hub (tests/hubstub.py).

- `trainers.lora --push-to-hub you/x` publishes the adapter, the model card and the metrics JSON (the adapter
  through the LFS batch API and an upload, the rest inline in an ndjson commit);
- the app serving `you/x` through a models config pulls it from the Hub, and serves what the trainer evaluated;
- a second push is a new commit (a new revision) that "Refresh models" picks up, the old one stays downloadable,
  and with the Hub gone the HF cache's copy still serves;
- `spaces/build_space.py --push-to-hub` pushes the staged Space as a Space repo that downloads back identical.

Everything runs in subprocesses, as a user would: huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import rows, write_rows
from tests.hubstub import GOOD_TOKEN, HubStub, closed_port_url
from workbench import paths, results
from workbench.store import LocalStore

REPO = "you/x"


def hub_env(tmp_path: Path, hub: HubStub, **extra: str) -> dict:
    """A subprocess environment: the test's store and results, online against the stub with a write token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(WORKBENCH_STORE=str(paths.STORE_DIR), WORKBENCH_RESULTS=str(paths.RESULTS_DIR),
               WORKBENCH_DEMO_DATA=str(paths.DEMO_DATA_DIR), HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="0",
               HF_ENDPOINT=hub.url, HF_TOKEN=GOOD_TOKEN, HF_HUB_DISABLE_XET="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False")
    env.update(extra)
    return env


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def train_and_push(tmp_path: Path, env: dict, data: Path, steps: int) -> subprocess.CompletedProcess:
    args = {"model": "test/tiny-base", "dataset": data, "output": "test/pushed-lora", "max-steps": steps,
            "batch-size": 4, "learning-rate": 1e-2, "logging-steps": 1, "precision": "fp32", "max-new-tokens": 6,
            "warmup-ratio": 0, "checkpoint-dir": tmp_path / f"ckpt-{steps}", "push-to-hub": REPO}
    cmd = [sys.executable, "-m", "trainers.lora", *[x for k, v in args.items() for x in (f"--{k}", str(v))]]
    out = subprocess.run(cmd, cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


# The app's model set in its own process: prints its status (and the LoRA's summary of one dialogue) as a JSON line,
# then on "refresh" reloads the way the app's "Refresh models" button does and prints again; "resolve REV" pulls an
# older revision of the Hub repo and prints the adapter's sha256.
APP_SCRIPT = r"""
import hashlib, json, sys
from workbench import prompts, store
from workbench.app_service import WorkbenchService
from workbench.generation import GenerationSettings
from workbench.modelset import ModelSet, ModelSetConfig

service = WorkbenchService(ModelSet(ModelSetConfig.load(sys.argv[1])))
dialogue = sys.argv[2]

def adapter_sha(folder):
    return hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()

def report():
    ms = service.models
    lora = ms.status["lora"]
    summary = ms.summarize({"lora": prompts.zero_shot(dialogue)}, GenerationSettings(max_new_tokens=6))["lora"]
    return {"base_ok": ms.status["base"].ok, "lora_ok": lora.ok, "lora_error": lora.error,
            "lora_ref": lora.ref, "lora_revision": lora.revision,
            "adapter_sha": adapter_sha(lora.folder) if lora.ok else None, "summary": summary.text}

print(json.dumps(report()), flush=True)
for line in sys.stdin:
    command = line.split()
    if command == ["refresh"]:
        service.reload()
        print(json.dumps(report()), flush=True)
    elif command[:1] == ["resolve"]:
        print(json.dumps({"adapter_sha": adapter_sha(store.resolve(%r, command[1]))}), flush=True)
""" % REPO


class App:
    """The APP_SCRIPT subprocess, one JSON line per command."""

    def __init__(self, env: dict, config: Path, dialogue: str):
        self.proc = subprocess.Popen([sys.executable, "-c", APP_SCRIPT, str(config), dialogue], cwd=paths.REPO_ROOT,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"the app process exited ({self.proc.poll()})"
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def hub_files(hub: HubStub, repo_id: str, kind: str = "model") -> dict[str, bytes]:
    repo = hub.repo(repo_id, kind)
    return repo.at("main")["files"]


def test_lora_push_pull_new_revision_and_refresh(tmp_path, tmp_store, tiny_model_dir):
    LocalStore().publish(tiny_model_dir, "test/tiny-base")
    data = write_rows(tmp_path / "data", rows(8))
    config = tmp_path / "models.yaml"
    config.write_text(f"base: {{ref: test/tiny-base}}\nlora: {{ref: {REPO}}}\ntoxicity: profanity-check\n"
                      "dtype: fp32\n")
    with HubStub() as hub:
        env = hub_env(tmp_path, hub)
        first = train_and_push(tmp_path, env, data, steps=3)
        assert f"pushed test/pushed-lora to the Hub as {REPO}" in first.stdout
        # (a) what the trainer published locally is what the Hub holds, the weights sent through LFS
        local = LocalStore().resolve("test/pushed-lora")
        pushed = hub_files(hub, REPO)
        assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "metrics.json"} <= set(pushed)
        for name in ("adapter_model.safetensors", "adapter_config.json", "README.md", "metrics.json"):
            assert pushed[name] == (local / name).read_bytes(), name
        [record] = [results.read(p) for p in paths.RESULTS_DIR.glob("lora-*.json")]
        assert json.loads(pushed["metrics.json"])["run_id"] == record["run_id"]
        assert pushed["README.md"].decode().startswith("---\nlibrary_name: peft")
        lfs_puts = [p for method, p, _ in hub.requests if method == "PUT" and p.startswith("/_lfs/")]
        assert f"/_lfs/{sha(pushed['adapter_model.safetensors'])}" in lfs_puts
        first_commit = hub.repo(REPO).refs["main"]

        # (b) the app serving you/x pulls it from the Hub and serves what the trainer evaluated
        dialogue = data.joinpath("test.jsonl").read_text().splitlines()[0]
        dialogue = json.loads(dialogue)["dialogue"]
        app = App(env, config, dialogue)
        try:
            status = app.read()
            assert status["base_ok"] and status["lora_ok"], status
            assert status["lora_ref"] == REPO and status["lora_revision"] == first_commit
            assert status["adapter_sha"] == sha(pushed["adapter_model.safetensors"])
            outputs = (paths.RESULTS_DIR / "outputs" / f"{record['run_id']}.jsonl").read_text().splitlines()
            assert status["summary"] == json.loads(outputs[0])["prediction"]

            # (c) a second push is a new revision; "Refresh models" serves it; the first stays downloadable
            train_and_push(tmp_path, env, data, steps=5)
            second_commit = hub.repo(REPO).refs["main"]
            assert second_commit != first_commit
            assert [c["id"] for c in hub.repo(REPO).commits][-2:] == [first_commit, second_commit]
            second = hub_files(hub, REPO)
            assert second["adapter_model.safetensors"] != pushed["adapter_model.safetensors"]
            refreshed = app.ask("refresh")
            assert refreshed["lora_ok"] and refreshed["lora_revision"] == second_commit
            assert refreshed["adapter_sha"] == sha(second["adapter_model.safetensors"])
            assert app.ask(f"resolve {first_commit}")["adapter_sha"] == status["adapter_sha"]
        finally:
            app.close()
    # the Hub gone (connections refused): the copy in the HF cache still serves, at once
    script = "import sys, time; from workbench import store; t = time.monotonic(); f = store.resolve(sys.argv[1]); " \
             "print(f.name, time.monotonic() - t)"
    gone = subprocess.run([sys.executable, "-c", script, REPO], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                          env={**env, "HF_ENDPOINT": closed_port_url()}, timeout=120)
    assert gone.returncode == 0, gone.stderr[-3000:]
    served, seconds = gone.stdout.split()
    assert served == second_commit and float(seconds) < 5


def test_space_staging_is_pushed_as_a_space_repo(tmp_path):
    """With the client's default upload path (hf_xet installed: the streamed pipeline; the stub stores every file
    as a regular git blob, as it does not speak Xet)."""
    staged = tmp_path / "space"
    with HubStub(lfs=False) as hub:
        env = hub_env(tmp_path, hub)
        env.pop("HF_HUB_DISABLE_XET")
        out = subprocess.run([sys.executable, "spaces/build_space.py", str(staged), "--push-to-hub",
                              "you/workbench-space"], cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        assert "pushed" in out.stdout and "you/workbench-space" in out.stdout
        with pytest.raises(KeyError):
            hub.repo("you/workbench-space", "model")  # a Space repo, not a model repo
        files = hub_files(hub, "you/workbench-space", "space")
        local = {p.relative_to(staged).as_posix(): p.read_bytes() for p in staged.rglob("*") if p.is_file()}
        assert {"README.md", "app.py", "requirements.txt", "workbench/__init__.py"} <= set(files)
        assert any(name.startswith("store/demo/") and name.endswith(".safetensors") for name in files)
        assert {k: sha(v) for k, v in files.items() if k != ".gitattributes"} == {k: sha(v) for k, v in local.items()}
        assert "\nsdk: gradio\n" in files["README.md"].decode()
        # and it downloads back identical with the client
        pull = subprocess.run([sys.executable, "-c", "import sys; from huggingface_hub import snapshot_download; "
                               "print(snapshot_download(sys.argv[1], repo_type='space', local_dir=sys.argv[2]))",
                               "you/workbench-space", str(tmp_path / "pulled")], env=env, capture_output=True,
                              text=True, timeout=300)
        assert pull.returncode == 0, pull.stderr[-3000:]
    pulled = tmp_path / "pulled"
    back = {p.relative_to(pulled).as_posix(): sha(p.read_bytes()) for p in pulled.rglob("*")
            if p.is_file() and ".cache" not in p.parts}
    assert back == {k: sha(v) for k, v in files.items()}
