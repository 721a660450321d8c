"""workbench.jobs: the exact trainer command for a request, validation of every field, one run at a time with a FIFO
queue, stop (SIGTERM, then SIGKILL after the timeout), resume from the checkpoint, progress/ETA/curves from the live
progress file, and jobs that outlive a SIGKILLed app.

Most tests run tests/fake_trainer.py (a trainer-shaped script, fractions of a second per step); one runs a real tiny
`trainers.lora`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_for
from trainers.callbacks import STOPPED_EXIT_CODE, progress_path, read_progress
from workbench import jobs as jb
from workbench import paths
from workbench.jobs import JobError, TrainingJobs, TrainRequest

FAKE = {recipe: "tests.fake_trainer" for recipe in jb.RECIPES}
BASE, LORA = "demo/flan-t5-demo-base", "demo/flan-t5-demo-lora"  # in the committed store




@pytest.fixture
def fake_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_FAKE_STEP_S", "0.04")
    made = []

    def make(**kwargs):
        kwargs = {"poll_s": 0.1, "stop_timeout": 20, "modules": FAKE, **kwargs}
        made.append(TrainingJobs(tmp_path / "runs", **kwargs))
        return made[-1]

    yield make
    for jobs in made:
        for job in jobs.jobs():
            if job.state in ("running", "stopping") and job.pid:
                try:
                    os.killpg(job.pid, signal.SIGKILL)
                except OSError:
                    pass
        jobs.close()


def lora(output="local/t-lora", **kwargs) -> TrainRequest:
    return TrainRequest(recipe="lora", model=BASE, dataset="demo", output=output, **kwargs)


# ------------------------------------------------------------------------------------------------ commands


def test_exact_commands_per_recipe():
    r = jb.validate(lora(max_steps=30, learning_rate=0.002, batch_size=8, train_limit=64, eval_limit=16, lora_r=8,
                         min_new_tokens=20, fresh=True))
    assert jb.build_argv(r) == ["-m", "trainers.lora", "--model", BASE, "--dataset", "demo", "--max-steps", "30",
                                "--train-limit", "64", "--eval-limit", "16", "--learning-rate", "0.002",
                                "--batch-size", "8", "--logging-steps", "5", "--save-steps", "50", "--lora-r", "8",
                                "--min-new-tokens", "20", "--output", "local/t-lora", "--fresh"]
    assert jb.command_line(jb.build_argv(r)).startswith("python -m trainers.lora --model demo/flan-t5-demo-base ")
    full = jb.validate(TrainRequest(recipe="full", model=BASE, dataset="dialogsum-local", output="me/full",
                                    max_steps=10))
    if "dialogsum-local" in jb.dialogue_datasets():
        assert jb.build_argv(full)[:8] == ["-m", "trainers.full", "--model", BASE, "--dataset", "dialogsum-local",
                                           "--train-split", "dev"]
    ppo = jb.validate(TrainRequest(recipe="ppo", model=LORA, dataset="demo", output="me/ppo", max_steps=12,
                                   batch_size=12, report_to="trackio", min_new_tokens=20))
    argv = jb.build_argv(ppo)
    assert "--min-new-tokens" not in argv  # PPO keeps the minimum of the adapter it starts from
    assert argv[:8] == ["-m", "trainers.ppo", "--policy", LORA, "--dataset", "demo", "--steps", "12"]
    assert argv[argv.index("--mini-batch-size") + 1] == "4"  # divides the batch of 12
    assert "--logging-steps" not in argv and argv[argv.index("--report-to") + 1] == "trackio"
    reward = jb.validate(TrainRequest(recipe="reward", model=BASE, dataset="demo", output="me/rm", max_steps=5))
    assert jb.build_argv(reward) == ["-m", "trainers.reward", "--tokenizer", BASE, "--pairs", "demo", "--max-steps",
                                     "5", "--output", "me/rm"]


def test_default_output_is_never_a_demo_name():
    r = jb.validate(TrainRequest(recipe="lora", model=BASE, dataset="demo"))
    assert r.output.startswith("local/") and "lora" in r.output


@pytest.mark.parametrize("change, field", [
    ({"recipe": "shell"}, "recipe"),
    ({"model": "../../etc/passwd"}, "model"),
    ({"model": LORA}, "model"),  # an adapter is not a base model for LoRA
    ({"dataset": "/etc/passwd"}, "dataset"),
    ({"output": "demo/flan-t5-demo-lora"}, "output"),
    ({"output": "a b/c; rm -rf /"}, "output"),
    ({"output": "--fresh"}, "output"),
    ({"max_steps": 0}, "max_steps"),
    ({"max_steps": "5; rm -rf /"}, "max_steps"),
    ({"max_steps": 2.5}, "max_steps"),
    ({"batch_size": 10_000}, "batch_size"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": "1e-3 --fresh"}, "learning_rate"),
    ({"report_to": "all"}, "report_to"),
    ({"min_new_tokens": 5000}, "min_new_tokens"),
    ({"min_new_tokens": "20 --fresh"}, "min_new_tokens"),
])
def test_every_field_is_checked(change, field):
    request = TrainRequest(**{**dict(recipe="lora", model=BASE, dataset="demo", output="local/x"), **change})
    with pytest.raises(JobError, match=f"^{field}:"):
        jb.validate(request)


# ------------------------------------------------------------------------------------------------ running


def test_progress_stop_and_resume_to_the_end(fake_jobs):
    jobs = fake_jobs()
    job = jobs.start(lora(max_steps=80, logging_steps=2, save_steps=1000))
    assert job.state == "running" and job.argv[:2] == ["-m", "tests.fake_trainer"]
    first = wait_for(lambda: len(jobs.curves(job.id)) >= 3 and len(jobs.curves(job.id)), 60, "a first curve")
    wait_for(lambda: len(jobs.curves(job.id)) > first, 20, "the curve to grow")
    status = jobs.status(job.id)
    assert status["state"] == "running" and status["max_steps"] == 80 and 0 < status["step"] < 80
    assert status["eta_s"] is not None and status["eta_s"] > 0 and status["elapsed_s"] > 0
    assert set(jobs.curves(job.id)["metric"]) == {"loss", "reward", "KL"}
    jobs.stop(job.id)
    assert jobs.get(job.id).state == "stopping"
    wait_for(lambda: jobs.get(job.id).state == "stopped", 30, "the stop")
    stopped = jobs.status(job.id)
    assert stopped["returncode"] == STOPPED_EXIT_CODE and stopped["can_resume"] and not stopped["can_stop"]
    at = stopped["step"]
    assert 0 < at < 80 and f"stopped on request after step {at}" in stopped["log_tail"]
    jobs.resume(job.id)
    wait_for(lambda: jobs.get(job.id).state == "done", 60, "the resumed run to finish")
    done = jobs.status(job.id)
    assert done["returncode"] == 0 and done["step"] == 80 and done["attempts"] == 2 and done["can_serve"]
    assert f"resuming after step {at}" in done["log_tail"]
    rows = read_progress(progress_path(jobs.get(job.id).run_dir))
    assert [r["step"] for r in rows if r["event"] == "begin"] == [0, at]  # resumed, not restarted
    losses = jobs.curves(job.id).query("metric == 'loss'")["step"].tolist()
    assert losses == sorted(set(losses)) and losses[-1] == 80
    with pytest.raises(JobError, match="done"):
        jobs.resume(job.id)


def test_one_run_at_a_time_and_a_fifo_queue(fake_jobs, monkeypatch):
    monkeypatch.setenv("WORKBENCH_FAKE_STEP_S", "0.02")
    jobs = fake_jobs()
    a = jobs.start(lora("local/a", max_steps=60))
    b = jobs.start(lora("local/b", max_steps=5))
    c = jobs.start(lora("local/c", max_steps=5))
    assert [q["job"] for q in jobs.queue()] == [a.id, b.id, c.id]
    assert [jobs.get(x.id).state for x in (a, b, c)] == ["running", "queued", "queued"]
    assert jobs.status(b.id)["queue"][1] == {"job": b.id, "state": "queued", "recipe": "lora", "output": "local/b",
                                             "position": 1}
    with pytest.raises(JobError, match="already trains local/a"):
        jobs.start(lora("local/a", max_steps=5))  # the same checkpoint folder
    jobs.stop(b.id)
    assert jobs.get(b.id).state == "cancelled"
    wait_for(lambda: jobs.get(c.id).state == "done", 60, "the queue to reach c")
    a_run, c_run = jobs.get(a.id), jobs.get(c.id)
    assert a_run.state == "done" and c_run.started_at >= a_run.finished_at  # c started only after a finished
    assert jobs.get(b.id).state == "cancelled" and jobs.get(b.id).started_at is None


def test_failed_run_reports_its_exit_code_and_can_be_resumed(fake_jobs, monkeypatch):
    monkeypatch.setenv("WORKBENCH_FAKE_FAIL_AT", "3")
    jobs = fake_jobs()
    job = jobs.start(lora(max_steps=10))
    wait_for(lambda: jobs.get(job.id).state == "failed", 30, "the failure")
    status = jobs.status(job.id)
    assert status["returncode"] == 1 and "error at step 3" in status["log_tail"] and status["can_resume"]


def test_stop_kills_a_trainer_that_ignores_sigterm(fake_jobs, monkeypatch):
    monkeypatch.setenv("WORKBENCH_FAKE_IGNORE_TERM", "1")
    jobs = fake_jobs(stop_timeout=1.0)
    job = jobs.start(lora(max_steps=2000))
    wait_for(lambda: jobs.status(job.id)["step"], 60, "the first step")
    jobs.stop(job.id)
    wait_for(lambda: jobs.get(job.id).state == "stopped", 20, "the kill")
    assert jobs.get(job.id).returncode == -signal.SIGKILL and "killed" in jobs.get(job.id).message


APP = """
import sys, time
from workbench.jobs import TrainingJobs, TrainRequest
jobs = TrainingJobs(sys.argv[1], poll_s=0.1, modules={"lora": "tests.fake_trainer"})
job = jobs.start(TrainRequest(recipe="lora", model="demo/flan-t5-demo-base", dataset="demo", output="local/k",
                              max_steps=int(sys.argv[2]), save_steps=5))
print(job.id, flush=True)
time.sleep(600)
"""


def test_a_run_outlives_a_sigkilled_app_and_resumes_after_dying_too(fake_jobs, tmp_path):
    env = {**os.environ, "WORKBENCH_FAKE_STEP_S": "0.04"}
    app = subprocess.Popen([sys.executable, "-c", APP, str(tmp_path / "runs"), "100000"], cwd=paths.REPO_ROOT,
                           env=env, stdout=subprocess.PIPE, text=True)
    try:
        job_id = app.stdout.readline().strip()
        saved = tmp_path / "runs" / "jobs" / f"{job_id}.json"
        wait_for(lambda: json.loads(saved.read_text())["state"] == "running", 30, "the job to start")
        app.kill()  # SIGKILL: the app has no chance to clean up
        app.wait(timeout=10)
    finally:
        if app.poll() is None:
            app.kill()
    jobs = fake_jobs()  # the restarted app
    job = jobs.get(job_id)
    assert job.state == "running"  # adopted: the trainer kept going on its own
    step = wait_for(lambda: jobs.status(job_id)["step"], 30, "progress")
    wait_for(lambda: (jobs.status(job_id)["step"] or 0) > step + 5, 30, "progress after the app died")
    os.killpg(job.pid, signal.SIGKILL)  # now the trainer dies too, with no app watching it
    wait_for(lambda: jobs.get(job_id).state == "interrupted", 20, "the job to be marked interrupted")
    assert jobs.status(job_id)["can_resume"]
    checkpoint = int((Path(job.run_dir) / "checkpoint").read_text())
    assert checkpoint >= 5
    later = fake_jobs()  # yet another app process sees the same state from runs/jobs/
    assert later.get(job_id).state == "interrupted"
    later.close()
    jobs.resume(job_id)
    wait_for(lambda: "resuming after step" in jobs.log_tail(job_id), 30, "the resumed trainer")
    assert f"resuming after step {checkpoint}" in jobs.log_tail(job_id)
    jobs.stop(job_id)
    wait_for(lambda: jobs.get(job_id).state == "stopped", 30, "the stop")


# ------------------------------------------------------------------------------------------------ a real trainer


def test_a_real_tiny_lora_run_served_in_a_slot(tmp_path, tiny_tokenizer, tiny_model_dir, monkeypatch):
    """trainers.lora itself, started by TrainingJobs on the tiny family's base in a temporary store: it finishes,
    publishes where the app reads, its loss curve is readable, and serving it in the LoRA slot (the "Refresh models"
    path) makes Compare answer from the new revision."""
    from tests import ui_fixtures as uf
    from workbench.store import LocalStore

    wb = uf.Workbench(tmp_path / "wb", tiny_tokenizer, tiny_model_dir, monkeypatch)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a tiny model on a shared CPU: threads only contend
    jobs = TrainingJobs(tmp_path / "runs", poll_s=0.2)
    try:
        job = jobs.start(TrainRequest(recipe="lora", model="test/tiny-base", dataset="demo", output="test/new-lora",
                                      max_steps=4, batch_size=4, logging_steps=2, save_steps=2, train_limit=8,
                                      eval_limit=2))
        wait_for(lambda: jobs.get(job.id).state not in ("queued", "running"), 240, "the LoRA run")
        status = jobs.status(job.id)
        assert status["state"] == "done", status["log_tail"]
        revision = LocalStore().head("test/new-lora")
        curve = jobs.curves(job.id)
        assert curve.query("metric == 'loss'")["step"].tolist() == [2, 4]
        with pytest.raises(JobError, match="slot"):
            jb.serve_in_slot(wb.service, "nope", "test/new-lora")
        summary = jb.serve_in_slot(wb.service, "lora", "test/new-lora")
        row = next(r for r in summary["slots"] if r["slot"] == "lora")
        assert row["ok"] and row["model"] == "test/new-lora" and row["revision"] == revision, row
        result = wb.service.compare(uf.DIALOGUES_EXTRA[0])
        assert result.models["lora"].model == "test/new-lora"
        assert result.models["lora"].revision == revision
    finally:
        jobs.close()


# ------------------------------------------------------------------------------------------------ the tab's API


def test_the_train_tab_drives_a_run_through_its_api(fake_jobs):
    import gradio as gr
    from gradio_client import Client

    from workbench.ui.train import build_train_tab

    jobs = fake_jobs()
    with gr.Blocks() as demo:
        build_train_tab(jobs)
    demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    try:
        client = Client(demo.local_url, verbose=False)
        fields = ["lora", BASE, "demo", "local/tab", 60, 0, 0, 2, 1000, 0, 0, 0, 0, "orpo", "none", False]
        command, _ = client.predict(*fields, api_name="/train_preview")
        assert command == ("python -m tests.fake_trainer --model demo/flan-t5-demo-base --dataset demo --max-steps 60 "
                           "--logging-steps 2 --save-steps 1000 --output local/tab")
        bad, message = client.predict(*fields[:3], "demo/x", *fields[4:], api_name="/train_preview")
        assert bad.startswith("# not runnable: output:") and "wb-error" in message
        message, _ = client.predict(*fields, api_name="/train_start")
        job_id = jobs.jobs()[0].id
        assert f"job {job_id} started" in message

        def status():
            html, plot, log, queue, _ = client.predict(job_id, None, api_name="/train_status")  # (no gr.State)
            return html, plot, log, queue

        html, plot, _, queue = wait_for(lambda: (s := status()) and 'data-state="running"' in s[0]
                                        and "loss" in json.dumps(s[1]) and s, 60, "a running job with a curve")
        assert "step " in html and "ETA" in html and queue["data"][0][1] == job_id
        assert "stop" in client.predict(job_id, api_name="/train_stop")
        wait_for(lambda: 'data-state="stopped"' in status()[0], 30, "the stop")
        resumed = client.predict(job_id, api_name="/train_resume")
        assert f"job {job_id}: running" in resumed or f"job {job_id}: queued" in resumed
        wait_for(lambda: 'data-state="done"' in status()[0], 60, "the resumed run to finish")
        assert "step 60 / 60" in status()[0]
    finally:
        demo.close()


def test_the_train_tab_refuses_visitors_the_owner_check_rejects(fake_jobs):
    import gradio as gr
    from gradio_client import Client

    from workbench.ui.train import build_train_tab

    jobs = fake_jobs()
    with gr.Blocks() as demo:
        build_train_tab(jobs, authorize=lambda request: f"only the Space owner may start training runs "
                                                        f"(asked with a {type(request).__name__})")
    demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    try:
        client = Client(demo.local_url, verbose=False)
        fields = ["lora", BASE, "demo", "local/tab", 60, 0, 0, 2, 1000, 0, 0, 0, 0, "orpo", "none", False]
        message, _ = client.predict(*fields, api_name="/train_start")
        assert "only the Space owner" in message and jobs.jobs() == []
        assert "asked with a Request" in message  # the visitor's request reaches the check
        for action in ("/train_stop", "/train_resume"):
            assert "only the Space owner" in client.predict(None, api_name=action)
    finally:
        demo.close()


def test_space_owner_only(monkeypatch):
    from types import SimpleNamespace

    from workbench.ui.train import space_owner_only

    def visitor(name):
        return SimpleNamespace(session={"oauth_info": {"userinfo": {"preferred_username": name}}} if name else {})

    monkeypatch.delenv("SPACE_AUTHOR_NAME", raising=False)
    assert space_owner_only(visitor(None)) is None  # not on a Space: --allow-training decided
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    assert space_owner_only(visitor("owner")) is None
    assert "only the owner" in space_owner_only(visitor("someone"))
    assert "only the owner" in space_owner_only(visitor(None))
    assert "only the owner" in space_owner_only(None)


def test_the_app_has_a_train_tab_only_when_started_with_allow_training(fake_jobs, tiny_tokenizer, tiny_model_dir,
                                                                        tmp_path, monkeypatch):
    from tests.ui_fixtures import Workbench
    from workbench.__main__ import parse_args
    from workbench.ui import build_app

    assert parse_args([]).allow_training is False
    assert parse_args(["--allow-training", "yes"]).allow_training is True
    monkeypatch.setenv("WORKBENCH_ALLOW_TRAINING", "yes")
    assert parse_args([]).allow_training is True
    wb = Workbench(tmp_path / "wb", tiny_tokenizer, tiny_model_dir, monkeypatch)

    def api_names(demo):
        return {fn.api_name for fn in demo.fns.values()}

    assert not any(name.startswith("train_") for name in api_names(build_app(wb.service)) if name)
    with_tab = api_names(build_app(wb.service, jobs=fake_jobs()))
    assert {"train_start", "train_stop", "train_resume", "train_status", "train_serve"} <= with_tab


def test_the_shortest_summary_field_shows_for_the_recipes_that_take_it(fake_jobs):
    """Full fine-tuning and LoRA take the trained model's minimum summary length; PPO and preference optimisation
    keep their start adapter's, so the field hides for them (as the preference loss shows only for preference)."""
    import gradio as gr

    from workbench.ui.train import TrainTab

    tab = TrainTab(fake_jobs())
    with gr.Blocks():
        tab.build()
    assert tab.min_tokens.value == 20 and tab.min_tokens.visible
    for recipe, shown in (("full", True), ("lora", True), ("ppo", False), ("reward", False)):
        *_, loss, min_tokens = tab.choices(recipe)
        assert min_tokens.visible is shown and loss.visible is False
