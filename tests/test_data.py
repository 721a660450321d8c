import json

import pytest

from tests.conftest import SHARED, needs_dialogsum
from workbench import data


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_jsonl_with_multiple_references(tmp_path):
    f = write_jsonl(tmp_path / "test.jsonl", [
        {"fname": "a", "dialogue": "#Person1#: Hi.\n#Person2#: Hello.", "summary1": "They greet.",
         "summary2": "Two people say hello.", "summary3": "They greet.", "topic1": "greeting"},
    ])
    [row] = data.load_dialogues(str(f))
    assert row["references"] == ["They greet.", "Two people say hello."]  # duplicates collapse
    assert row["summary"] == "They greet." and row["topic"] == "greeting" and row["fname"] == "a"


def test_folder_split_lookup_and_aliases(tmp_path):
    write_jsonl(tmp_path / "dialogsum.dev.jsonl", [{"dialogue": "#Person1#: x", "summary": "y", "topic": "t"}])
    write_jsonl(tmp_path / "train.jsonl", [{"dialogue": f"#Person1#: a{i}", "summary": "b"} for i in range(3)])
    assert len(data.load_dialogues(str(tmp_path), "validation")) == 1
    assert len(data.load_dialogues(str(tmp_path), "train", limit=2)) == 2
    with pytest.raises(data.DataError, match="no file for split 'test'"):
        data.load_dialogues(str(tmp_path), "test")


def test_csv_and_parquet(tmp_path):
    import pandas as pd

    frame = pd.DataFrame([{"dialogue": "#Person1#: hi", "summary": "greeting", "topic": "t"}])
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.to_parquet(tmp_path / "test.parquet")
    assert data.load_dialogues(str(tmp_path / "train.csv"))[0]["summary"] == "greeting"
    assert data.load_dialogues(str(tmp_path / "test.parquet"))[0]["dialogue"] == "#Person1#: hi"


@pytest.mark.parametrize("row, message", [
    ({"summary": "s"}, "line 1: field 'dialogue' is missing or empty"),
    ({"dialogue": "   ", "summary": "s"}, "field 'dialogue' is missing or empty"),
    ({"dialogue": "d"}, "no reference summary"),
    ({"dialogue": "d", "summary": 3}, "field 'summary' must be text"),
])
def test_malformed_rows_name_file_row_and_field(tmp_path, row, message):
    f = write_jsonl(tmp_path / "bad.jsonl", [row])
    with pytest.raises(data.DataError, match=message) as err:
        data.load_dialogues(str(f))
    assert "bad.jsonl" in str(err.value)


def test_missing_file_and_unparseable_file(tmp_path):
    with pytest.raises(data.DataError, match="file not found"):
        data.load_dialogues(str(tmp_path / "nope.jsonl"))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"dialogue": "x", "summary": \n')
    with pytest.raises(data.DataError, match="broken.jsonl line 1: not valid JSON"):
        data.load_dialogues(str(broken))


def test_empty_split(tmp_path):
    (tmp_path / "test.csv").write_text("dialogue,summary\n")
    with pytest.raises(data.DataError):
        data.load_dialogues(str(tmp_path / "test.csv"))


@needs_dialogsum
def test_shared_dialogsum_test_split_has_three_references():
    rows = data.load_dialogues(data.SHARED, "test")
    assert len(rows) == 500
    assert all(row["dialogue"].startswith("#Person1#:") for row in rows)
    assert sum(len(r["references"]) == 3 for r in rows) > 450
    dev = data.load_dialogues(data.SHARED, "dev", limit=5)
    assert len(dev) == 5 and dev[0]["fname"] == "dev_0"


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def test_hub_layout_groups_repeated_dialogues_into_one_example_with_three_references():
    """The Hub copies store each test dialogue on three rows, one summary each (ids test_0_1..test_0_3)."""
    rows = data.load_dialogues(str(FIXTURES / "hub_layout_test.csv"))
    assert len(rows) == 2
    assert [r["fname"] for r in rows] == ["test_0", "test_1"]
    assert all(len(r["references"]) == 3 for r in rows)
    assert rows[0]["references"][1] == "#Person2# agrees to water #Person1#'s plants every second day."
    assert rows[0]["summary"] == rows[0]["references"][0] and rows[1]["topic"] == "office"
    assert data.load_dialogues(str(FIXTURES / "hub_layout_test.csv"), limit=1)[0]["references"] == rows[0]["references"]


def test_grouping_keeps_first_occurrence_order_and_plain_ids(tmp_path):
    f = write_jsonl(tmp_path / "t.jsonl", [
        {"id": "b", "dialogue": "#Person1#: two", "summary": "s2"},
        {"id": "a", "dialogue": "#Person1#: one", "summary": "s1"},
        {"id": "b", "dialogue": "#Person1#:  two ", "summary": "s2 again"},
        {"id": "c", "dialogue": "#Person1#: three", "summary": "s3"},
    ])
    rows = data.load_dialogues(str(f))
    assert [(r["fname"], r["references"]) for r in rows] == [("b", ["s2", "s2 again"]), ("a", ["s1"]), ("c", ["s3"])]


def test_evaluator_n_counts_dialogues_not_hub_rows():
    from workbench import evaluation

    rows = data.load_dialogues(str(FIXTURES / "hub_layout_test.csv"))
    predictions = ["#Person2# will call a technician about the printer."] * len(rows)
    records = evaluation.score_outputs(predictions, rows)
    metrics = evaluation.summarize_scores(records)
    assert metrics["rouge1"]["n"] == 2
    # best F1 over the three references, not their mean: the second dialogue's prediction is scored against
    # the reference it matches best
    from workbench import scoring
    best = max(scoring.rouge_per_example([predictions[1]], [[ref]])[0]["rouge1"] for ref in rows[1]["references"])
    assert records[1]["rouge1"] == pytest.approx(best)


def test_malformed_jsonl_line_is_named_from_one_with_the_reason(tmp_path):
    good = json.dumps({"dialogue": "#Person1#: hi", "summary": "s"})
    f = tmp_path / "seven.jsonl"
    f.write_text("\n".join([good] * 3 + [""] + [good] * 2 + ['{"dialogue": "x", "summary": "y",}', good]) + "\n")
    with pytest.raises(data.DataError) as err:
        data.load_dialogues(str(f))
    message = str(err.value)
    assert "seven.jsonl line 7: not valid JSON" in message and "column" in message
    f.write_text(good + "\n" + "[1, 2]\n")
    with pytest.raises(data.DataError, match="line 2: expected a JSON object, got list"):
        data.load_dialogues(str(f))


def test_csv_and_parquet_rows_count_from_one(tmp_path):
    import pandas as pd

    frame = pd.DataFrame([{"dialogue": "#Person1#: hi", "summary": "s"}] * 6 + [{"dialogue": "", "summary": "s"}])
    frame.to_csv(tmp_path / "test.csv", index=False)
    frame.to_parquet(tmp_path / "test.parquet")
    with pytest.raises(data.DataError, match=r"test.csv row 7 \(data rows count from 1, header not counted\)"):
        data.load_dialogues(str(tmp_path / "test.csv"))
    with pytest.raises(data.DataError, match="test.parquet row 7: field 'dialogue'"):
        data.load_dialogues(str(tmp_path / "test.parquet"))


def test_distinct_examples_sharing_a_dialogue_stay_distinct(tmp_path):
    """DialogSum's own test file has two examples (test_173, test_337) with one dialogue text: n stays 500 there."""
    f = write_jsonl(tmp_path / "test.jsonl", [
        {"fname": "test_1", "dialogue": "#Person1#: same", "summary1": "a", "summary2": "b"},
        {"fname": "test_2", "dialogue": "#Person1#: other", "summary1": "c"},
        {"fname": "test_3", "dialogue": "#Person1#: same", "summary1": "d", "summary2": "e"},
    ])
    rows = data.load_dialogues(str(f))
    assert [(r["fname"], r["references"]) for r in rows] == [("test_1", ["a", "b"]), ("test_2", ["c"]),
                                                             ("test_3", ["d", "e"])]
