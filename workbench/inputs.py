"""Input rules of the app: what a user may send, cleaned and bounded before any model call (no gradio here).

Every text field goes through `clean_text` (newlines normalised, control and invisible format characters removed,
a hard length limit, empty text refused); every number through `number` (finite, inside its range); decoding
settings through `generation_settings`. A problem is an `InputError` whose message is one sentence shown to the user
as is; `refusal` turns it into the `{"ok": False, "message": ...}` answer the service returns.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence

from workbench import data, prompts
from workbench.generation import GenerationSettings, count_tokens

MAX_DIALOGUE_CHARS = 20_000
MAX_REFERENCE_CHARS = 5_000
MAX_SCORE_CHARS = 20_000
MAX_SHOTS_CHARS = 20_000
MAX_SHOTS = 3
SAMPLE_RANGE = (1, 200)
SAMPLE_DEFAULT = 20
SEED_MAX = 2**31 - 1
DECODING = ("greedy", "beam search", "sampling")
GEN_RANGES = {
    "max_new_tokens": (1, 256),
    "num_beams": (1, 8),
    "temperature": (0.05, 2.0),
    "top_p": (0.05, 1.0),
}
DATASET_SPLITS = {  # dataset choice -> (split of target dialogues, split the in-context shots come from)
    data.DEMO: ("test", "train"),
    data.SHARED: ("test", "validation"),
}
REFERENCE_SEPARATOR = "---"
SHOT_SEPARATOR = "==="

# C0/C1 controls (newline and tab stay), lone surrogates and non-characters; invisible format characters (Unicode
# category Cf: bidi marks and overrides, zero-width characters, BOM, soft hyphen, ...) are removed by `_visible`.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


class InputError(ValueError):
    """A problem with what the user typed; the message is shown to them as is."""


def refusal(err) -> dict:
    """The service's answer to a request it will not run: one message, also listed as the only notice."""
    return {"ok": False, "message": str(err), "notices": [str(err)]}


def shown(value, limit: int = 40) -> str:
    """A user's value quoted back in a message, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _visible(text: str) -> str:
    """Drop format characters (category Cf) except the zero-width joiner, which joins emoji sequences (👋🏽, flags)
    that a user may well have typed; every other Cf character is invisible and can reorder or hide text."""
    if text.isascii():
        return text
    return "".join(c for c in text if c == "\u200d" or unicodedata.category(c) != "Cf")


def _kind(value) -> str:
    """What a JSON value sent where text belongs is, in words (never its repr)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


def clean_text(text, *, field: str, limit: int, required: bool = True) -> str:
    """Normalise newlines, drop control and invisible format characters (newline and tab stay), enforce the limit.

    Raises InputError for anything but text, for text over `limit` characters, and for empty/whitespace text when
    `required`.
    """
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(f"{field} must be text, not {_kind(text)}.")
    if len(text) > limit:
        raise InputError(f"{field} is {len(text):,} characters long; the limit is {limit:,}. Shorten it and retry.")
    text = _visible(_CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))).strip()
    if required and not text:
        raise InputError(f"{field} is empty: type or paste some text, or pick an example.")
    return text


def parse_references(text: str) -> list[str]:
    """Several references are separated by a line holding only `---`."""
    parts = re.split(rf"(?m)^\s*{re.escape(REFERENCE_SEPARATOR)}\s*$", text or "")
    return [p.strip() for p in parts if p.strip()]


def join_references(references: Sequence[str]) -> str:
    return f"\n{REFERENCE_SEPARATOR}\n".join(references)


def parse_shots(text: str) -> list[tuple[str, str]]:
    """Typed shots: blocks separated by a line `===`; in each block the line starting `Summary:` and what follows
    is the summary, the lines before it the dialogue."""
    shots = []
    blocks = [b for b in re.split(rf"(?m)^\s*{re.escape(SHOT_SEPARATOR)}\s*$", text or "") if b.strip()]
    for i, block in enumerate(blocks, 1):
        match = re.search(r"(?mi)^\s*summary\s*:", block)
        if not match:
            raise InputError(f"Typed shot {i} has no 'Summary:' line (the format is dialogue lines, then "
                             f"'Summary: ...'; separate shots with a line '{SHOT_SEPARATOR}').")
        dialogue, summary = block[: match.start()].strip(), block[match.end():].strip()
        if not dialogue or not summary:
            raise InputError(f"Typed shot {i} needs both a dialogue and a summary.")
        shots.append((dialogue, summary))
    if len(shots) > MAX_SHOTS:
        raise InputError(f"There are {len(shots)} typed shots; at most {MAX_SHOTS} are allowed.")
    return shots


def number(value, name: str, low: float, high: float, *, integer: bool = False) -> float:
    """`value` as a finite number inside [low, high] (a whole one when `integer`), or an InputError naming `name`."""
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"The {name} must be a number (got {shown(value)}).") from None
    if not math.isfinite(out) or not low <= out <= high:
        raise InputError(f"The {name} must be between {low:g} and {high:g} (got {shown(value)}).")
    if integer:
        if out != int(out):
            raise InputError(f"The {name} must be a whole number (got {shown(value)}).")
        return int(out)
    return out


def dataset_choice(dataset) -> str:
    """One of the fixed dataset names (users never give paths)."""
    if not isinstance(dataset, str) or dataset not in DATASET_SPLITS:
        raise InputError(f"Unknown dataset {shown(dataset)}; choose one of: {', '.join(DATASET_SPLITS)}.")
    return dataset


def generation_settings(decoding: str = "greedy", max_new_tokens=64, num_beams=4, temperature=0.7,
                        top_p=0.9) -> GenerationSettings:
    """Bounded decoding settings from UI/API values; greedy unless asked otherwise."""
    if decoding not in DECODING:
        raise InputError(f"The decoding must be one of: {', '.join(DECODING)} (got {shown(decoding)}).")
    limits = {k: number(v, k, *GEN_RANGES[k], integer=k in ("max_new_tokens", "num_beams"))
              for k, v in dict(max_new_tokens=max_new_tokens, num_beams=num_beams, temperature=temperature,
                               top_p=top_p).items()}
    if decoding == "greedy":
        return GenerationSettings(max_new_tokens=limits["max_new_tokens"])
    if decoding == "beam search":
        return GenerationSettings(max_new_tokens=limits["max_new_tokens"], num_beams=max(2, limits["num_beams"]))
    return GenerationSettings(max_new_tokens=limits["max_new_tokens"], do_sample=True,
                              temperature=limits["temperature"], top_p=limits["top_p"], top_k=0)


def fitting_prefix(tokenizer, text: str, limit: int, build: Callable[[str], str] = lambda s: s) -> int:
    """The longest prefix length of `text` (in characters) for which `build(prefix)` has at most `limit` tokens."""
    if count_tokens(tokenizer, build(text)) <= limit:
        return len(text)
    low, high = 0, len(text)  # build(text[:low]) fits (or low == 0), build(text[:high]) does not
    while high - low > 1:
        mid = (low + high) // 2
        if count_tokens(tokenizer, build(text[:mid])) <= limit:
            low = mid
        else:
            high = mid
    return low


def fit_dialogue(tokenizer, dialogue: str, limit: int, build: Callable[[str], str] = prompts.zero_shot):
    """Cut the dialogue (at a word boundary) so that the whole prompt, instruction and cue included, fits `limit`.

    Returns (dialogue kept, prompt tokens before, prompt tokens after). Cutting the dialogue rather than letting the
    tokenizer cut the prompt keeps the trailing "Summary:" cue the models were trained to answer.
    """
    before = count_tokens(tokenizer, build(dialogue))
    if before <= limit:
        return dialogue, before, before
    keep = fitting_prefix(tokenizer, dialogue, limit, build)
    cut = dialogue[:keep]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > keep * 0.8:
        cut = cut[:space]
    cut = cut.rstrip()
    return cut, before, count_tokens(tokenizer, build(cut))


def chosen_slots(value, known: Sequence[str], low: int = 2, high: int = 6) -> list[str]:
    """The slots a user picked to compare: names from `known` (in `known`'s order, each once), from `low` to `high`
    of them, so that the cards fit side by side and a vote still has something to compare."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or any(not isinstance(v, str) for v in value):
        raise InputError(f"The models to compare must be a list of slot names (got {_kind(value)}).")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise InputError(f"There is no model slot {shown(unknown[0])}; choose from {', '.join(known)}.")
    picked = [s for s in known if s in value]
    if not low <= len(picked) <= high:
        raise InputError(f"Choose from {low} to {high} models to compare (you chose {len(picked)}).")
    return picked
