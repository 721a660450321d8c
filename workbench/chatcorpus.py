"""Real conversations for pretraining the demo base: the BYU Chit-Chat Challenge corpus (`chitchat_dataset` on PyPI,
MIT licence; 7,168 open-domain conversations between people, 258,145 messages), cut into DialogSum-shaped windows.

The generated corpora (workbench/corpus.py, workbench/opencorpus.py) teach the base what a dialogue looks like and
how to copy from it, but their English is a template's: words drawn at random into fixed speech acts. These windows
are people writing to each other, so the base also reads real word order, idioms, typos and turns that answer each
other. Only their text is pretrained on; they have no summaries and no summarizer is trained on them.

Each window is a run of consecutive turns of one conversation (a turn: one person's consecutive messages, joined),
written as DialogSum writes a dialogue: `#Person1#: ...` for whoever speaks first in the window, `#Person2#: ...` for
the other. Light clean-up only: whitespace collapsed, a turn's first letter and a lone "i" capitalised. Deterministic
for a seed.
"""

from __future__ import annotations

import functools
import random
import re

MIN_TURNS, MAX_TURNS = 4, 12  # DialogSum's dialogues have 9.5 turns on average (dev: 2 to 39)
_SPACE = re.compile(r"\s+")
_LONE_I = re.compile(r"\bi\b")


def _clean(text: str) -> str:
    text = _LONE_I.sub("I", _SPACE.sub(" ", text).strip())
    return text[:1].upper() + text[1:]


@functools.cache
def conversations() -> tuple[tuple[str, ...], ...]:
    """Every conversation of the corpus as its turns, speakers alternating, empty turns dropped (file order)."""
    import chitchat_dataset  # imported only when the base is pretrained

    out = []
    for turns in chitchat_dataset.ConversationDataset():
        kept = tuple(t for t in (_clean(turn) for turn in turns) if t)
        if len(kept) >= MIN_TURNS:
            out.append(kept)
    return tuple(out)


def windows(turns: tuple[str, ...], rng: random.Random) -> list[str]:
    """A conversation cut into consecutive windows of MIN_TURNS to MAX_TURNS turns, each as a DialogSum dialogue;
    a tail shorter than MIN_TURNS is dropped."""
    out, start = [], 0
    while len(turns) - start >= MIN_TURNS:
        size = min(rng.randint(MIN_TURNS, MAX_TURNS), len(turns) - start)
        out.append("\n".join(f"#Person{1 + k % 2}#: {turn}" for k, turn in enumerate(turns[start:start + size])))
        start += size
    return out


def chat_dialogues(n: int, seed: int) -> list[str]:
    """`n` windows drawn from the whole corpus (every window of every conversation, shuffled, the first `n`); fewer
    when the corpus has fewer."""
    if n < 0:
        raise ValueError("n: must be 0 or more")
    rng = random.Random(seed)
    pool = [w for turns in conversations() for w in windows(turns, rng)]
    rng.shuffle(pool)
    return pool[:n]
