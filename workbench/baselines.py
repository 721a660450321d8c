"""Rule-based summaries of a DialogSum-style dialogue: the reference lines every model is measured against, and the
rule that writes the references of the demo corpus's open-vocabulary dialogues.

- `lead`: "#Person1# and #Person2# talk about " + the first utterance, word for word. On DialogSum test (500
  dialogues, best F1 over three references) it scores ROUGE-1 0.346, ROUGE-2 0.113, ROUGE-L 0.273: a summarizer that
  does not beat it has learned nothing a one-line rule cannot do.
- `restate`: the same opening phrase, then the dialogue's first sentences that are not greetings or fillers, retold
  from outside: "I" becomes the speaker's tag, "you" the other's ("#Person1#: Can you fix my bike?" ->
  "#Person1# and #Person2# talk about Can #Person2# fix #Person1#'s bike?"), until six words are written. Chosen on
  DialogSum dev (500 dialogues, one reference): ROUGE-1 0.327 against `lead`'s 0.288.

`restate` is a function of the text alone, so a model that learns it on generated dialogues can apply it to any
dialogue: that is how the demo family learns to summarize content it has never seen (see workbench/opencorpus.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable

OPENING = "#Person1# and #Person2# talk about "
_TURN = re.compile(r"^\s*(#Person\d+#)\s*:\s*(.*)$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_SPACED_APOSTROPHE = re.compile(r"\s+'\s+")  # DialogSum's "I ' Ve" / "don ' t"
_FILLER = re.compile(
    r"^(hi|hello|hey|good (morning|afternoon|evening)|excuse me|how are you|how do you do|nice to meet you|"
    r"thank you|thanks|yes|no|oh|well|ok|okay|sure|sorry|pardon|mr\.|mrs\.|ms\.)\b[^.?!]*[.?!,]*$",
    re.IGNORECASE,
)
# Words retold from outside the dialogue; {me} is the speaker's tag, {you} the other speaker's.
POINT_OF_VIEW = {
    "i": "{me}", "me": "{me}", "myself": "{me}", "my": "{me}'s", "mine": "{me}'s", "you": "{you}", "your": "{you}'s",
    "yours": "{you}'s", "yourself": "{you}", "we": "they", "us": "them", "our": "their", "ours": "theirs",
    "i'm": "{me} is", "i've": "{me} has", "i'll": "{me} will", "i'd": "{me} would", "you're": "{you} are",
    "you've": "{you} have", "you'll": "{you} will", "you'd": "{you} would", "am": "is",
}
_WORD = re.compile(r"[A-Za-z']+")


def turns(dialogue: str) -> list[tuple[str, str]]:
    """(speaker tag, utterance) per line that starts with a `#PersonN#:` tag."""
    out = []
    for line in dialogue.splitlines():
        match = _TURN.match(line)
        if match and match.group(2).strip():
            out.append((match.group(1), _SPACED_APOSTROPHE.sub("'", match.group(2).strip())))
    return out


def retell(text: str, speaker: str, listener: str) -> str:
    """`text` said by `speaker` to `listener`, with first and second person replaced by the speakers' tags."""
    def replace(match: re.Match) -> str:
        word = match.group(0)
        new = POINT_OF_VIEW.get(word.lower())
        if new is None:
            return word
        new = new.format(me=speaker, you=listener)
        return new[0].upper() + new[1:] if word[0].isupper() else new  # "We" -> "They"

    return _WORD.sub(replace, text)


def lead(dialogue: str) -> str:
    """"#Person1# and #Person2# talk about " + the first utterance, word for word."""
    first = turns(dialogue)
    return OPENING + (first[0][1] if first else "")


def restate(dialogue: str, min_words: int = 6) -> str:
    """The opening phrase, then the first sentences that are not greetings or fillers, retold from outside."""
    parts, words = [], 0
    for speaker, text in turns(dialogue):
        listener = "#Person2#" if speaker == "#Person1#" else "#Person1#"
        kept = [s for s in _SENTENCE.split(text) if s.strip() and not _FILLER.match(s.strip())]
        if not kept:
            continue
        parts.append(retell(" ".join(kept), speaker, listener))
        words += len(parts[-1].split())
        if words >= min_words:
            break
    return OPENING + " ".join(parts)


BASELINES: dict[str, Callable[[str], str]] = {"lead": lead, "restate": restate}
