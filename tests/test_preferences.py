"""workbench.preferences: votes -> preference pairs, durable concurrent appends, the dataset repo, statistics."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from workbench import paths, preferences, store
from workbench.preferences import PreferenceError

NAME = "test/votes"
OUTPUTS = {"A": ("demo/base", "rev-a", "Tom and Ann talk."),
           "B": ("demo/lora", "rev-b", "Tom invites Ann to tennis on Saturday."),
           "C": ("demo/ppo", "rev-c", "Tom is an idiot."),
           "D": ("demo/full", "rev-d", "Ann agrees to play tennis.")}
SETTINGS = {"max_new_tokens": 64, "do_sample": False}


def vote(name: str = NAME, *, tag: str = "", **kwargs) -> list[dict]:
    args = dict(dialogue=f"#Person1#: tennis? {tag}", prompt=f"Summarize {tag}", outputs=OUTPUTS, best="B",
                settings=SETTINGS, voter="alice", dialogue_id=tag)
    return preferences.record_vote(name, **{**args, **kwargs})


def pairs_of(records: list[dict]) -> set[tuple[str, str, str]]:
    return {(r["chosen_slot"], r["rejected_slot"], r["reason"]) for r in records}


# ------------------------------------------------------------------------------------------------ votes -> pairs


def test_best_beats_every_other_shown_output():
    records = preferences.build_pairs(dialogue="d", prompt="p", outputs=OUTPUTS, best="B", settings=SETTINGS,
                                      voter="alice")
    assert pairs_of(records) == {("B", "A", "best"), ("B", "C", "best"), ("B", "D", "best")}
    assert [r["pair_index"] for r in records] == [0, 1, 2]
    assert len({r["vote_id"] for r in records}) == 1 and len({r["created_at"] for r in records}) == 1
    first = next(r for r in records if r["rejected_slot"] == "C")
    assert (first["chosen"], first["rejected"]) == (OUTPUTS["B"][2], OUTPUTS["C"][2])
    assert (first["chosen_model"], first["chosen_revision"]) == ("demo/lora", "rev-b")
    assert (first["rejected_model"], first["rejected_revision"]) == ("demo/ppo", "rev-c")
    assert json.loads(first["settings"]) == SETTINGS and first["voter"] == "alice" and first["source"] == "vote"
    assert all(set(r) == set(preferences.COLUMNS) for r in records)


def test_unacceptable_outputs_lose_to_every_acceptable_one_without_duplicates():
    records = preferences.build_pairs(dialogue="d", prompt="p", outputs=OUTPUTS, best="A", unacceptable=["C", "D"])
    assert pairs_of(records) == {("A", "B", "best"), ("A", "C", "best"), ("A", "D", "best"),
                                 ("B", "C", "unacceptable"), ("B", "D", "unacceptable")}
    assert len(records) == 5  # A>C and A>D are implied twice and written once; C and D are not compared
    only_bad = preferences.build_pairs(dialogue="d", prompt="p", outputs=OUTPUTS, unacceptable=["C"])
    assert pairs_of(only_bad) == {("A", "C", "unacceptable"), ("B", "C", "unacceptable"),
                                  ("D", "C", "unacceptable")}


def test_own_summary_is_chosen_over_every_output():
    own = "Tom invites Ann to play tennis at 10 am on Saturday; she agrees."
    records = preferences.build_pairs(dialogue="d", prompt="p", outputs=OUTPUTS, own_summary=f"  {own} ")
    assert pairs_of(records) == {("own", s, "own_summary") for s in "ABCD"}
    assert all(r["chosen"] == own and r["chosen_model"] == preferences.HUMAN for r in records)
    with_best = preferences.build_pairs(dialogue="d", prompt="p", outputs=OUTPUTS, own_summary=own, best="D")
    assert len(with_best) == 4 + 3 and ("D", "A", "best") in pairs_of(with_best)


def test_no_pair_between_identical_texts_or_a_slot_and_itself():
    outputs = {"A": ("m1", "r1", "Same text."), "B": ("m2", "r2", "Same text. "), "C": ("m3", "r3", "Other.")}
    records = preferences.build_pairs(dialogue="d", prompt="p", outputs=outputs, best="A", unacceptable=["C"])
    assert pairs_of(records) == {("A", "C", "best"), ("B", "C", "unacceptable")}
    assert preferences.build_pairs(dialogue="d", prompt="p", outputs={"A": outputs["A"]}, best="A") == []
    assert all(r["chosen_slot"] != r["rejected_slot"] for r in records)


@pytest.mark.parametrize("kwargs, message", [
    (dict(best="Z"), "not one of the shown outputs"),
    (dict(best="A", unacceptable=["A"]), "also marked unacceptable"),
    (dict(unacceptable=["Q"]), "not among the shown outputs"),
    (dict(own_summary="   "), "needs a best output"),
    (dict(), "needs a best output"),
    (dict(best="A", outputs={}), "at least one output"),
    (dict(best="A", outputs={"A": ("m", "r")}), "expected (model_id, revision, summary)"),
    (dict(best="A", own_summary="x" * 30_000), "characters"),
    (dict(best="A", outputs={"A": ("m", "r", " "), "B": ("n", "r", "text")}), "empty summary"),
])
def test_bad_votes_are_refused_with_one_line(kwargs, message):
    args = {"dialogue": "d", "prompt": "p", "outputs": OUTPUTS, **kwargs}
    with pytest.raises(PreferenceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        preferences.build_pairs(**args)


# ------------------------------------------------------------------------------------------------ storage


def test_recorded_votes_form_a_hub_dataset_repo(tmp_store):
    import datasets

    vote(tag="1")
    vote(tag="2", best="A", unacceptable=["C"], own_summary="A better summary.")
    folder = tmp_store / "datasets" / "test" / "votes"
    pairs = preferences.load_pairs(NAME)
    assert len(pairs) == 3 + (4 + 3 + 2) and preferences.list_datasets() == [NAME]
    loaded = datasets.load_dataset("json", data_files=str(folder / "data" / "*.jsonl"), split="train")
    assert loaded.num_rows == len(pairs) and set(loaded.column_names) == set(preferences.COLUMNS)
    assert loaded[0]["chosen"] == pairs[0]["chosen"] and loaded[5]["rejected"] == pairs[5]["rejected"]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "path: data/*.jsonl" in card
    assert f"**{len(pairs)} pairs** from 2 votes by 1 voter(s)" in card
    as_repo = datasets.load_dataset(str(folder), split="train")  # how the Hub reads it: the card's configs
    assert as_repo.num_rows == len(pairs) and as_repo.features["pair_index"].dtype == "int64"


def test_every_append_is_fsynced_before_record_vote_returns(tmp_store, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(preferences.os, "fsync", spy)
    vote(tag="x")
    assert str(preferences.data_path(NAME)) in synced


def test_twenty_threads_lose_and_duplicate_nothing(tmp_store):
    errors = []

    def voter(t: int) -> None:
        try:
            for i in range(10):
                vote(tag=f"t{t}-v{i}", voter=f"voter{t}")
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=voter, args=(t,)) for t in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    records, skipped = preferences.read_records(preferences.data_path(NAME))
    assert skipped == 0 and len(records) == 20 * 10 * 3
    keys = [(r["dialogue_id"], r["pair_index"]) for r in records]
    assert sorted(keys) == sorted((f"t{t}-v{i}", k) for t in range(20) for i in range(10) for k in range(3))
    assert len({r["vote_id"] for r in records}) == 200
    assert "**600 pairs** from 200 votes by 20 voter(s)" in (preferences.dataset_dir(NAME) / "README.md").read_text()


def _process_voter(store_dir: str, worker: int, n: int) -> None:
    paths.STORE_DIR = Path(store_dir)
    for i in range(n):
        vote(tag=f"p{worker}-v{i}")


def test_four_processes_lose_and_duplicate_nothing(tmp_store):
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_process_voter, args=(str(tmp_store), w, 25)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    records, skipped = preferences.read_records(preferences.data_path(NAME))
    assert skipped == 0 and len(records) == 4 * 25 * 3
    assert len({(r["dialogue_id"], r["pair_index"]) for r in records}) == 300


def test_a_vote_that_returned_survives_sigkill(tmp_store):
    script = ("from tests.test_preferences import vote\n"
              "records = vote(tag='killed')\nprint('done', len(records), flush=True)\n"
              "import time\ntime.sleep(60)\n")
    env = {**os.environ, "WORKBENCH_STORE": str(tmp_store), "PYTHONPATH": str(paths.REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=paths.REPO_ROOT)
    try:
        line = proc.stdout.readline()
        os.kill(proc.pid, signal.SIGKILL)  # right after the call returned
    finally:
        proc.wait(30)
    assert line.split() == ["done", "3"] and proc.returncode == -signal.SIGKILL
    pairs = preferences.load_pairs(NAME)
    assert [(p["dialogue_id"], p["pair_index"]) for p in pairs] == [("killed", 0), ("killed", 1), ("killed", 2)]


def test_a_torn_last_line_is_skipped_and_the_next_vote_cuts_it_off(tmp_store):
    import datasets

    vote(tag="1")
    path = preferences.data_path(NAME)
    with open(path, "ab") as handle:
        handle.write(b'{"vote_id": "torn", "pair_index": 0, "chosen": "half a rec')  # a writer killed mid-line
    assert [p["dialogue_id"] for p in preferences.load_pairs(NAME)] == ["1"] * 3
    assert preferences.read_records(path)[1] == 1
    vote(tag="2")
    records, skipped = preferences.read_records(path)
    assert skipped == 0 and [r["dialogue_id"] for r in records] == ["1"] * 3 + ["2"] * 3
    assert datasets.load_dataset("json", data_files=str(path), split="train").num_rows == 6


@pytest.mark.parametrize("complete_before", [False, True])
def test_a_long_torn_tail_is_cut_back_to_the_last_complete_line(tmp_store, complete_before):
    path = preferences.data_path(NAME)
    if complete_before:
        vote(tag="0")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        handle.write(b"x" * 70_000)  # longer than one backwards read
    vote(tag="1")
    records, skipped = preferences.read_records(path)
    assert skipped == 0 and [r["dialogue_id"] for r in records] == ["0"] * 3 * complete_before + ["1"] * 3


def test_export_and_push_send_only_complete_records(tmp_store, tmp_path, monkeypatch):
    vote(tag="1")
    with open(preferences.data_path(NAME), "ab") as handle:
        handle.write(b'{"torn": ')
    exported = preferences.export(NAME, tmp_path / "out.jsonl")
    assert len(exported.read_text().splitlines()) == 3
    archive = preferences.export(NAME)
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["README.md", "data/pairs.jsonl"]
        assert len(z.read("data/pairs.jsonl").splitlines()) == 3
    with pytest.raises(PreferenceError, match=".jsonl or .zip"):
        preferences.export(NAME, tmp_path / "out.csv")

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs["repo_type"]))

        def upload_folder(self, *, repo_id, repo_type, folder_path, commit_message):
            files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*")
                           if p.is_file())
            lines = (Path(folder_path) / "data" / "pairs.jsonl").read_text().splitlines()
            calls.append(("upload", repo_id, repo_type, files, len(lines)))
            return type("Commit", (), {"commit_url": "https://hub/commit/1"})()

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    assert preferences.push_to_hub(NAME, "you/votes") == "https://hub/commit/1"
    assert calls == [("create", "you/votes", "dataset"),
                     ("upload", "you/votes", "dataset", ["README.md", "data/pairs.jsonl"], 3)]
    with pytest.raises(store.StoreError, match="valid repo id"):
        preferences.push_to_hub(NAME, "not a repo")
    with pytest.raises(PreferenceError, match="no preference pairs"):
        preferences.push_to_hub("test/empty", "you/votes", api=FakeApi())


# ------------------------------------------------------------------------------------------------ statistics


def synthetic_votes(strengths: dict[str, float], n_votes: int, seed: int) -> list[dict]:
    """Two-output votes between random model pairs; the first model wins with Bradley-Terry probability."""
    rng = np.random.default_rng(seed)
    models = sorted(strengths)
    out = []
    for v in range(n_votes):
        a, b = rng.choice(len(models), size=2, replace=False)
        p_a = 1 / (1 + 10 ** ((strengths[models[b]] - strengths[models[a]]) / 400))
        best = "x" if rng.random() < p_a else "y"
        outputs = {"x": (models[a], "r", f"summary {v} by {models[a]}"), "y": (models[b], "r", f"summary {v} by y")}
        out += preferences.build_pairs(dialogue=f"d{v}", prompt="p", outputs=outputs, best=best)
    return out


def test_bradley_terry_recovers_the_ordering_of_known_strengths():
    truth = {"m0": 0.0, "m1": 150.0, "m2": 300.0, "m3": 450.0}
    board = preferences.bradley_terry(synthetic_votes(truth, 1200, seed=1), n_boot=100, seed=0)
    assert list(board["model"]) == ["m3", "m2", "m1", "m0"] and list(board["rank"]) == [1, 2, 3, 4]
    centred = {m: s - np.mean(list(truth.values())) + 1000 for m, s in truth.items()}
    for row in board.itertuples():
        assert abs(row.score - centred[row.model]) < 60
        assert row.ci_low < row.score < row.ci_high and row.ci_high - row.ci_low < 200
    assert abs(board["score"].mean() - 1000) < 1e-6


def test_bradley_terry_stays_finite_for_an_unbeaten_model():
    pairs = synthetic_votes({"a": 0.0, "b": 5000.0}, 30, seed=0)  # b wins every time
    board = preferences.bradley_terry(pairs, n_boot=20)
    assert board["model"].tolist() == ["b", "a"] and np.isfinite(board[["score", "ci_low", "ci_high"]]).all().all()


def test_win_rate_intervals_contain_the_true_rates():
    truth = {"a": 0.0, "b": 100.0, "c": 250.0}
    table = preferences.win_rates(synthetic_votes(truth, 900, seed=2), n_boot=1000, seed=0).set_index("model")

    def p_win(x, y):
        return 1 / (1 + 10 ** ((truth[y] - truth[x]) / 400))

    for model in truth:  # pairs are drawn uniformly, so the true rate is the mean over the two opponents
        true_rate = np.mean([p_win(model, other) for other in truth if other != model])
        row = table.loc[model]
        assert row.ci_low <= true_rate <= row.ci_high, (model, true_rate, row.ci_low, row.ci_high)
        assert row.ci_high - row.ci_low < 0.12 and row.comparisons == row.votes
    assert table.index.tolist() == ["c", "b", "a"]


def test_win_rates_resample_votes_not_pairs():
    # one vote with 3 pairs won by "good": its pairs move together, so with a single vote the CI is a point
    records = preferences.build_pairs(dialogue="d", prompt="p", outputs=OUTPUTS, best="B")
    table = preferences.win_rates(records, n_boot=200).set_index("model")
    assert table.loc["demo/lora", "win_rate"] == 1.0 and table.loc["demo/lora", "ci_low"] == 1.0
    assert table.loc["demo/ppo", "comparisons"] == 1 and table.loc["demo/ppo", "votes"] == 1


def test_latest_votes_and_summary(tmp_store):
    vote(tag="old", voter="bob")
    vote(tag="new", best="A", unacceptable=["C"], own_summary="Mine.")
    stats = preferences.summarize(NAME, n_boot=20)
    assert stats.counts["votes"] == 2 and stats.counts["pairs"] == 3 + 9 and stats.counts["voters"] == 2
    latest = stats.latest
    assert latest["dialogue"].str.endswith("new").tolist() == [True, False]
    assert latest.loc[0, "best"] == "human, demo/base" and latest.loc[0, "unacceptable"] == "demo/ppo"
    assert latest.loc[0, "pairs"] == 9 and latest.loc[1, "voter"] == "bob"
    assert "human" not in stats.win_rates["model"].tolist()  # own summaries rank no model against another
    assert set(stats.leaderboard["model"]) == {"demo/base", "demo/lora", "demo/ppo", "demo/full"}


def test_command_line_lists_summarises_and_exports(tmp_store, tmp_path, capsys):
    vote(tag="1")
    assert preferences.main(["list"]) == 0 and capsys.readouterr().out.strip() == NAME
    assert preferences.main(["stats", NAME]) == 0
    out = capsys.readouterr().out
    assert '"pairs": 3' in out and "demo/lora" in out and "win_rate" in out
    assert preferences.main(["export", NAME, str(tmp_path / "x.zip")]) == 0 and (tmp_path / "x.zip").is_file()
    assert preferences.main(["export", "test/nothing", str(tmp_path / "y.zip")]) == 2
    assert "no preference pairs yet" in capsys.readouterr().err
