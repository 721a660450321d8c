"""Real conversations for the demo base's pretraining: DialogSum-shaped windows of the Chit-Chat corpus."""

import random
import re

from trainers import pretrain
from workbench import chatcorpus

TURN = re.compile(r"#Person([12])#: (\S.*)")


def test_a_conversation_becomes_consecutive_windows_with_alternating_speakers():
    turns = tuple(f"turn {k}" for k in range(30))
    windows = chatcorpus.windows(turns, random.Random(0))
    read = [[TURN.fullmatch(line).groups() for line in w.split("\n")] for w in windows]
    assert all(chatcorpus.MIN_TURNS <= len(w) <= chatcorpus.MAX_TURNS for w in read)
    assert all([int(p) for p, _ in w] == [1 + k % 2 for k in range(len(w))] for w in read)  # Person1 opens each
    flat = [text for w in read for _, text in w]
    assert flat == list(turns[:len(flat)])  # consecutive, in order, nothing repeated
    assert len(turns) - len(flat) < chatcorpus.MIN_TURNS  # only a short tail is dropped


def test_too_short_a_conversation_gives_no_window():
    assert chatcorpus.windows(("hi", "hello", "bye"), random.Random(0)) == []


def test_turns_are_cleaned_lightly():
    assert chatcorpus._clean("  i think  i'm\n fine, is it? ") == "I think I'm fine, is it?"
    assert chatcorpus._clean("ice is nice") == "Ice is nice"  # a word that starts with i is left alone


def test_the_corpus_gives_many_real_windows_deterministically():
    dialogues = chatcorpus.chat_dialogues(400, seed=1)
    assert len(dialogues) == 400 and len(set(dialogues)) == 400
    assert dialogues == chatcorpus.chat_dialogues(400, seed=1)
    assert dialogues != chatcorpus.chat_dialogues(400, seed=2)
    assert all(TURN.fullmatch(line) for d in dialogues for line in d.split("\n"))
    words = {w.lower() for d in dialogues for w in re.findall(r"[A-Za-z]+", d)}
    assert len(words) > 4000  # open-domain English, not a template's
    assert len(chatcorpus.chat_dialogues(10**9, seed=0)) > 15000


def test_pretraining_adds_the_windows_it_is_asked_for(monkeypatch):
    monkeypatch.setattr(pretrain.common, "load_rows", lambda *a, **k: [])
    config = pretrain.PretrainRecipe(dataset="demo", extra_dialogues=0, chat_dialogues=25)
    rows = [{"dialogue": "#Person1#: Hello.\n#Person2#: Hi."}]
    sources = pretrain.pretraining_dialogues(config, rows)
    assert sources == {"split": [rows[0]["dialogue"]], "extra": [],
                       "chat": chatcorpus.chat_dialogues(25, seed=config.seed + 2)}
