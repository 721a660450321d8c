"""load_train_eval: a single file never trains and evaluates on the same dialogues without saying so."""

import json

import pytest

from workbench import data


def write_dialogues(path, n, start=0):
    path.write_text("".join(json.dumps({"fname": f"d{i}", "dialogue": f"#Person1#: dialogue number {i}",
                                        "summary": f"summary {i}"}) + "\n" for i in range(start, start + n)))
    return path


def test_one_file_for_both_splits_holds_out_a_seeded_disjoint_part(tmp_path):
    f = write_dialogues(tmp_path / "all.jsonl", 40)
    train, evaluation, info = data.load_train_eval(str(f), "train", "test", holdout=0.25, seed=3)
    assert len(train) == 30 and len(evaluation) == 10
    assert not {r["dialogue"] for r in train} & {r["dialogue"] for r in evaluation}
    assert {r["fname"] for r in train} | {r["fname"] for r in evaluation} == {f"d{i}" for i in range(40)}
    assert info["held_out"] is True and info["holdout_seed"] == 3
    assert info["train"] == {"split": "train", "n": 30} and info["eval"] == {"split": "test", "n": 10}
    assert "held out 10 of 40" in info["note"]
    again = data.load_train_eval(str(f), "train", "test", holdout=0.25, seed=3)
    assert [r["fname"] for r in again[1]] == [r["fname"] for r in evaluation]  # seeded: the same part each time
    other = data.load_train_eval(str(f), "train", "test", holdout=0.25, seed=4)
    assert [r["fname"] for r in other[1]] != [r["fname"] for r in evaluation]


def test_hold_out_never_splits_one_dialogue_across_sides():
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "hub_layout_test.csv"  # 2 dialogues x 3 summary rows
    train, evaluation, info = data.load_train_eval(str(fixture), "train", "train", holdout=0.5)
    assert info["held_out"] and len(train) == len(evaluation) == 1
    assert train[0]["dialogue"] != evaluation[0]["dialogue"] and len(evaluation[0]["references"]) == 3


def test_limits_apply_after_the_hold_out(tmp_path):
    f = write_dialogues(tmp_path / "all.jsonl", 20)
    full_train, full_eval, _ = data.load_train_eval(str(f), "train", "validation", holdout=0.2)
    train, evaluation, info = data.load_train_eval(str(f), "train", "validation", train_limit=5, eval_limit=2,
                                                   holdout=0.2)
    assert train == full_train[:5] and evaluation == full_eval[:2]
    assert not {r["fname"] for r in train} & {r["fname"] for r in full_eval}
    assert info["train"]["n"] == 5 and info["eval"]["n"] == 2 and info["held_out"]


def test_distinct_splits_are_used_as_they_are(tmp_path):
    write_dialogues(tmp_path / "train.jsonl", 12)
    write_dialogues(tmp_path / "test.jsonl", 4, start=100)
    train, evaluation, info = data.load_train_eval(str(tmp_path), "train", "test", train_limit=10)
    assert len(train) == 10 and len(evaluation) == 4
    assert info["held_out"] is False and info["holdout_seed"] is None
    assert info["train"] == {"split": "train", "n": 10} and info["eval"] == {"split": "test", "n": 4}
    assert "also appear" not in info["note"]


def test_distinct_splits_that_share_dialogues_say_so(tmp_path):
    write_dialogues(tmp_path / "train.jsonl", 6)
    write_dialogues(tmp_path / "test.jsonl", 4, start=4)  # d4, d5 are in both
    _, _, info = data.load_train_eval(str(tmp_path), "train", "test")
    assert "2 evaluation dialogue(s) also appear in the training rows" in info["note"]


def test_demo_splits_are_distinct():
    train, evaluation, info = data.load_train_eval(data.DEMO, "train", "test", train_limit=3)
    assert info["held_out"] is False and len(train) == 3 and len(evaluation) == info["eval"]["n"] > 0


def test_hold_out_needs_two_dialogues_and_a_valid_share(tmp_path):
    f = write_dialogues(tmp_path / "one.jsonl", 1)
    with pytest.raises(data.DataError, match="cannot be split"):
        data.load_train_eval(str(f), "train", "test")
    with pytest.raises(data.DataError, match=r"holdout: must be in \[0, 1\)"):
        data.load_train_eval(str(f), "train", "test", holdout=1.0)


def test_no_hold_out_is_stated_in_the_note(tmp_path):
    f = write_dialogues(tmp_path / "all.jsonl", 5)
    train, evaluation, info = data.load_train_eval(str(f), "train", "test", holdout=0)
    assert train == evaluation and info["held_out"] is False
    assert "evaluation uses the training dialogues" in info["note"]
