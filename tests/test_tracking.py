"""`--report-to trackio`: a training run's curve is readable with trackio itself, offline (its local SQLite store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import rows, write_rows
from tests.test_trainer_resume import argv
from trainers import tracking
from trainers.options import ConfigError
from workbench import paths
from workbench.store import LocalStore

pytestmark = pytest.mark.skipif("trackio" not in tracking.installed(), reason="trackio is not installed")


def test_unknown_or_missing_tracker_is_refused_naming_the_option():
    with pytest.raises(ConfigError, match="report_to: expected one of"):
        tracking.check_report_to("report_to", "mlflow")
    missing = [t for t in tracking.TRACKERS if t not in tracking.installed()]
    for name in missing:
        with pytest.raises(ConfigError, match="is not installed here"):
            tracking.check_report_to("report_to", name)


def test_lora_run_reported_to_trackio_is_readable_with_trackio_offline(tiny_model_dir, tmp_store, tmp_path):
    LocalStore().publish(tiny_model_dir, "test/tiny-base")
    folder = write_rows(tmp_path / "data", rows(8))
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "WORKBENCH_STORE": str(paths.STORE_DIR),
           "WORKBENCH_RESULTS": str(paths.RESULTS_DIR), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = argv(folder, tmp_path, "tracked", **{"report-to": "trackio"})
    done = subprocess.run([sys.executable, "-m", "trainers.lora", *command], env=env, capture_output=True,
                          text=True, timeout=300, cwd=paths.REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = next(paths.RESULTS_DIR.glob("lora-*.json")).stem
    read = ("import json, sys, trackio.sqlite_storage as s; "
            f"print(json.dumps(s.SQLiteStorage.get_logs({tracking.PROJECT!r}, run={run_id!r})))")
    logs = json.loads(subprocess.run([sys.executable, "-c", read], env=env, capture_output=True, text=True,
                                     timeout=120, check=True).stdout)
    losses = [entry["train/loss"] for entry in logs if "train/loss" in entry]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)  # --logging-steps 1, --max-steps 4
    record = json.loads(next(paths.RESULTS_DIR.glob("logs/lora-*.jsonl")).read_text().splitlines()[0])
    assert losses[0] == pytest.approx(record["loss"])  # the same curve as the run's own log
