"""The prompts, defined once: the reference recipe's instruction (zero-shot and every fine-tune) and its
one/few-shot blocks for in-context learning on the base model."""

from __future__ import annotations

from collections.abc import Sequence

INSTRUCTION = "Summarize the following conversation."


def zero_shot(dialogue: str) -> str:
    """The instruction prompt used for zero-shot inference and for all fine-tuning (full, LoRA, PPO)."""
    return f"{INSTRUCTION}\n\n{dialogue.strip()}\n\nSummary: "


def shot_block(dialogue: str, summary: str | None = None) -> str:
    """One in-context block; the target block has no summary, so the model writes it."""
    block = f"Dialogue:\n\n{dialogue.strip()}\n\nWhat was going on?\n"
    return block + (f"{summary.strip()}\n\n\n" if summary is not None else "")


def few_shot(dialogue: str, shots: Sequence[tuple[str, str]] = ()) -> str:
    """Zero shots gives the block form without examples; one or more give one-shot / few-shot prompts."""
    return "".join(shot_block(d, s) for d, s in shots) + shot_block(dialogue)


def style_for(shots: Sequence) -> str:
    """The prompt form a request gets unless forced: in-context blocks with shots, the instruction without."""
    return "blocks" if shots else "instruction"


def build_prompt(dialogue: str, shots: Sequence[tuple[str, str]] = (), style: str | None = None) -> str:
    """The prompt the base model is asked with: the instruction (zero-shot, as every fine-tune was trained) without
    shots, the in-context blocks with one or more. `style` ("instruction" or "blocks") forces one form; the
    instruction form takes no shots."""
    style = style or style_for(shots)
    if style == "instruction":
        if shots:
            raise ValueError("the instruction prompt takes no shots; use style='blocks' for one/few-shot")
        return zero_shot(dialogue)
    if style == "blocks":
        return few_shot(dialogue, shots)
    raise ValueError(f"unknown prompt style {style!r} (expected 'instruction' or 'blocks')")
