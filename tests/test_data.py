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
    write_jsonl(tmp_path / "train.jsonl", [{"dialogue": "#Person1#: a", "summary": "b"}] * 3)
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
    ({"summary": "s"}, "row 0: field 'dialogue' is missing or empty"),
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
    with pytest.raises(data.DataError, match="broken.jsonl"):
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
