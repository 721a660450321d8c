"""trainers.restate_probe: the issue-14 diagnosis (does a model copy, does it find where to start) counts right, and
runs end to end on a tiny model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests import ui_fixtures as uf
from trainers import restate_probe
from workbench import baselines, paths

DIALOGUE = ("#Person1#: Hello, Tom.\n#Person2#: Hi.\n#Person1#: I lost my blue umbrella at the station.\n"
            "#Person2#: Oh no.")


class Oracle(nn.Module):
    """Predicts the label at every position (`shift` = 0), or the wrong token everywhere (`shift` = 1), or the right
    one everywhere but at the first content token (`miss_first`)."""

    def __init__(self, skip: int, shift: int = 0, miss_first: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # a device to read
        self.skip, self.shift, self.miss_first = skip, shift, miss_first

    def forward(self, input_ids, attention_mask=None, labels=None):
        guess = (labels + self.shift) % 1000
        if self.miss_first:
            guess[0, self.skip] = (guess[0, self.skip] + 1) % 1000
        return SimpleNamespace(logits=nn.functional.one_hot(guess, 1000).float())


def test_teacher_forced_counts_only_the_content_after_the_opening(tiny_tokenizer):
    skip = len(tiny_tokenizer(baselines.OPENING.strip()).input_ids) - 1
    prompt, target = "Summarize: " + DIALOGUE, baselines.restate(DIALOGUE)
    assert target.startswith(baselines.OPENING) and "umbrella" in target
    content = len(tiny_tokenizer(target).input_ids) - 1 - skip  # without the opening and </s>
    perfect = restate_probe.teacher_forced(Oracle(skip), tiny_tokenizer, [prompt], [target])
    assert perfect == {"accuracy": 1.0, "first_token": 1.0, "tokens": content}
    wrong = restate_probe.teacher_forced(Oracle(skip, shift=1), tiny_tokenizer, [prompt], [target])
    assert wrong["accuracy"] == 0.0 and wrong["first_token"] == 0.0
    lost = restate_probe.teacher_forced(Oracle(skip, miss_first=True), tiny_tokenizer, [prompt], [target])
    assert lost["first_token"] == 0.0 and lost["accuracy"] == pytest.approx(1 - 1 / content)


def test_only_rule_written_rows_are_probed_when_there_are_some():
    ruled = {"dialogue": DIALOGUE, "summary": baselines.restate(DIALOGUE), "topic": "open"}
    scenario = {"dialogue": DIALOGUE, "summary": "#Person1# lost an umbrella.", "topic": "lost"}
    assert restate_probe.restate_rows([scenario, ruled, scenario]) == ([ruled], True)
    human = {"dialogue": DIALOGUE, "summary1": "Person1 lost an umbrella.", "summary2": "An umbrella is lost."}
    assert restate_probe.restate_rows([human, human]) == ([human, human], False)


def test_the_probe_runs_on_a_model_from_the_store(tmp_path, tiny_tokenizer, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(paths, "STORE_DIR", uf.build_family(tmp_path, tiny_tokenizer, tiny_model_dir))
    data = tmp_path / "data"
    data.mkdir()
    pairs = [(DIALOGUE, "Tom lost his umbrella."), *((d, "They talk.") for d in uf.DIALOGUES_EXTRA)]
    rows = [{"fname": f"t{i}", "dialogue": d, "summary1": s, "summary2": s.upper(), "topic": "x"}
            for i, (d, s) in enumerate(pairs)]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = restate_probe.main(["--model", uf.REPOS["full"], "--dataset", str(data), "--split", "test",
                                 "--max-new-tokens", "8"])
    assert report["n"] == len(rows) and 0 <= report["teacher_forced_accuracy"] <= 1
    assert 0 <= report["first_content_token"] <= 1 and 0 <= report["greedy_fidelity_rouge1"] <= 1
    assert 0 <= report["rouge1"] <= 1 and report["distinct"] >= 1  # human references: scored against them too
    assert "teacher-forced restate accuracy" in capsys.readouterr().out


class FirstMatchCopier(nn.Module):
    """Copies its input by a lookup keyed on the previous token only: after a token that occurs more than once it
    continues from the token's first occurrence, as a one-token induction circuit does."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, labels=None):
        ids = input_ids[0].tolist()
        guess = [ids[0]] + [ids[ids.index(ids[i - 1]) + 1] for i in range(1, len(ids))]
        return SimpleNamespace(logits=nn.functional.one_hot(torch.tensor([guess]), 1000).float())


def test_readback_splits_copy_accuracy_by_how_often_the_previous_token_occurs(tiny_tokenizer):
    dialogue = "#Person1#: the cat saw the dog and the bird saw the cat. #Person2#: Did it?"
    report = restate_probe.readback(FirstMatchCopier(), tiny_tokenizer, [dialogue])
    by = report["by_previous_token"]
    assert by["once"]["accuracy"] == 1.0  # a unique key points at the one right place
    assert by["4+"]["accuracy"] < 1.0 or by["2-3"]["accuracy"] < 1.0  # a repeated one at the first occurrence
    assert report["tokens"] == sum(v["tokens"] for v in by.values())
    assert 0 < report["accuracy"] < 1
