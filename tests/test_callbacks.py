"""trainers.callbacks: the live progress file and the clean stop on SIGTERM, on a real (tiny) Seq2SeqTrainer run in a
subprocess, as the Train tab runs the trainers.

Run as a module (`python -m tests.test_callbacks MODEL_DIR CKPT MAX_STEPS`) it is that subprocess: a tiny T5 trained
with Seq2SeqTrainer and ProgressCallback, exiting like a trainer does when stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import wait_for
from trainers import callbacks
from workbench import paths


# ------------------------------------------------------------------------------------------------ unit level


def test_progress_writer_appends_whole_flushed_lines_and_reader_drops_redone_steps(tmp_path):
    path = callbacks.progress_path(tmp_path / "run")
    assert path == tmp_path / "run" / "progress.jsonl"
    with callbacks.ProgressWriter(path, max_steps=10) as writer:
        writer.begin(0)
        for step in (2, 4, 6):
            writer.log(step, loss=float(10 - step), grad_norm=float("nan"))
            # flushed at once: another reader sees the line while the writer is still open
            assert json.loads(path.read_text().splitlines()[-1])["step"] == step
    with callbacks.ProgressWriter(path, max_steps=10) as writer:  # a resumed run: back to its checkpoint at step 4
        writer.begin(4)
        writer.log(6, loss=3.5)
        writer.end(6)
    with open(path, "a") as handle:
        handle.write('{"event": "log", "step": 7, "lo')  # a line torn by a kill
    rows = callbacks.read_progress(path)
    logs = [(r["step"], r["loss"]) for r in rows if r["event"] == "log"]
    assert logs == [(2, 8.0), (4, 6.0), (6, 3.5)]  # step 6 from before the resume is gone, the redone one kept
    assert all(r["max_steps"] == 10 for r in rows)
    first = json.loads(path.read_text().splitlines()[1])
    assert first["grad_norm"] is None  # NaN is not JSON: written as null


def test_tick_is_rate_limited(tmp_path):
    path = tmp_path / "p.jsonl"
    with callbacks.ProgressWriter(path, max_steps=100, tick_s=60) as writer:
        for step in range(1, 50):
            writer.tick(step)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1]


def test_stop_flag_catches_sigterm_and_restores_the_previous_handler():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *a: seen.append("previous"))
    try:
        flag = callbacks.StopFlag().install()
        assert flag.installed
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert flag.requested and flag.signal_name == "SIGTERM" and seen == []
        os.kill(os.getpid(), signal.SIGTERM)  # asked twice: passed on to the handler from before
        time.sleep(0.05)
        assert seen == ["previous"] and not flag.installed
        flag2 = callbacks.StopFlag().install()
        flag2.restore()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert seen == ["previous", "previous"] and not flag2.requested
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------------------------ a real Trainer run


def tiny_train(model_dir: str, ckpt: str, max_steps: int) -> int:
    """The subprocess: a tiny Seq2SeqTrainer run with ProgressCallback, resuming from the last checkpoint; a stopped
    run exits with STOPPED_EXIT_CODE and does nothing else, as the trainers do."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    from tests.conftest import rows
    from trainers import common
    from workbench import modeling

    torch.set_num_threads(1)

    class Slow(TrainerCallback):  # a tiny model trains in milliseconds; a real step takes longer
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(0.05)

    tokenizer = modeling.load_tokenizer(model_dir)
    model = modeling.load_model(model_dir, dtype="fp32", device="cpu")
    args = Seq2SeqTrainingArguments(output_dir=ckpt, max_steps=max_steps, per_device_train_batch_size=4,
                                    learning_rate=1e-3, logging_steps=2, save_steps=10_000, save_total_limit=2,
                                    report_to=[], use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    progress = callbacks.ProgressCallback(callbacks.progress_path(ckpt), tick_s=0.2)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=common.tokenize_pairs(tokenizer, rows(16), 64, 32),
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
                             processing_class=tokenizer, callbacks=[progress, Slow()])
    trainer.train(resume_from_checkpoint=common.last_checkpoint(Path(ckpt)))
    if progress.stopped:
        return callbacks.stop_exit(trainer.state.global_step, ckpt)
    print(f"finished at step {trainer.state.global_step}", flush=True)
    return 0


def _launch(model_dir: Path, ckpt: Path, max_steps: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.test_callbacks", str(model_dir), str(ckpt), str(max_steps)],
                            cwd=paths.REPO_ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)




def test_sigterm_mid_run_leaves_a_complete_checkpoint_and_the_same_command_resumes(tmp_path, tiny_model_dir):
    from trainers import common

    ckpt, log = tmp_path / "ckpt", tmp_path / "train.log"
    progress = callbacks.progress_path(ckpt)
    proc = _launch(tiny_model_dir, ckpt, 5000, log)
    try:
        wait_for(lambda: [r for r in callbacks.read_progress(progress) if r["event"] == "log"], 90, "a first loss")
        size = progress.stat().st_size
        wait_for(lambda: progress.stat().st_size > size, 10, "the progress file to grow while training")
        assert proc.poll() is None  # ... while the run is still going
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code == callbacks.STOPPED_EXIT_CODE, output[-2000:]
    rows = callbacks.read_progress(progress)
    end = rows[-1]
    assert end["event"] == "end" and end["stopped"] is True and 0 < end["step"] < 5000
    assert [r["step"] for r in rows if r["event"] == "log"] == sorted({r["step"] for r in rows if r["event"] == "log"})
    assert all(r["max_steps"] == 5000 for r in rows)
    last = common.last_checkpoint(ckpt)  # complete: weights, optimizer, scheduler and trainer_state at that step
    assert last is not None and Path(last).name == f"checkpoint-{end['step']}", output[-2000:]
    state = json.loads((Path(last) / "trainer_state.json").read_text())
    assert state["global_step"] == end["step"]
    assert f"stopped on request after step {end['step']}" in output

    stopped_at = end["step"]
    proc = _launch(tiny_model_dir, ckpt, stopped_at + 3, log)  # the same command (a later end): resumes, finishes
    assert proc.wait(timeout=120) == 0, log.read_text()[-2000:]
    rows = callbacks.read_progress(progress)
    begins = [r["step"] for r in rows if r["event"] == "begin"]
    assert begins == [0, stopped_at]  # the second run started at the checkpoint, not from scratch
    assert rows[-1]["event"] == "end" and rows[-1]["stopped"] is False and rows[-1]["step"] == stopped_at + 3
    assert f"finished at step {stopped_at + 3}" in log.read_text()


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(tiny_train(sys.argv[1], sys.argv[2], int(sys.argv[3])))
