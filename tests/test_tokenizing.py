"""Threads sharing one tokenizer: the app's request threads count a dialogue's tokens while its batcher thread pads a
batch. A fast tokenizer sets its padding on every call, so without `tokenizing.encode`'s lock the counting threads
switched the padding off mid-call (15 of 822 requests failed under 20 users, benchmarks.load 2026-12-05)."""

from __future__ import annotations

import threading
import time

import pytest

from workbench import generation, tokenizing

TEXTS = ["short one", "a much longer text about a trip to the bank " * 8, "a medium length text here " * 3]


def _race(pad, count, seconds: float = 1.5) -> list[str]:
    """One thread padding batches of different lengths, three counting tokens, for `seconds`: the padding errors."""
    stop, errors = time.monotonic() + seconds, []

    def padder():
        while time.monotonic() < stop:
            try:
                pad()
            except Exception as err:  # noqa: BLE001 - what the race looks like
                errors.append(repr(err)[:120])

    def counter():
        while time.monotonic() < stop:
            count()

    threads = [threading.Thread(target=padder)] + [threading.Thread(target=counter) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_the_race_is_real_without_the_lock(tiny_tokenizer):
    """The failure the lock prevents, reproduced on the bare tokenizer (a fast one, as the app serves)."""
    if not getattr(tiny_tokenizer, "is_fast", False):
        pytest.skip("only fast tokenizers keep padding state in a shared object")
    errors = _race(lambda: tiny_tokenizer(TEXTS, return_tensors="pt", padding=True, truncation=True, max_length=512),
                   lambda: tiny_tokenizer(TEXTS[1] * 3, truncation=False))
    assert errors and "Unable to create tensor" in errors[0]


def test_counting_beside_generation_never_breaks_a_batch(tiny_tokenizer):
    """What the app does: `generation.generate`'s padded encoding (its first step, timed alone here through the same
    call) beside request threads calling `generation.count_tokens`, all through `tokenizing.encode`."""
    errors = _race(lambda: tokenizing.encode(tiny_tokenizer, TEXTS, return_tensors="pt", padding=True,
                                             truncation=True, max_length=512),
                   lambda: generation.count_tokens(tiny_tokenizer, TEXTS[1] * 3))
    assert errors == []


def test_generate_pads_batches_while_other_threads_count(tiny_tokenizer, tiny_model_dir):
    from workbench import modeling

    model = modeling.load_model(tiny_model_dir)
    settings = generation.GenerationSettings(max_new_tokens=2)
    errors = _race(lambda: generation.generate(model, tiny_tokenizer, TEXTS, settings, batch_size=3),
                   lambda: generation.count_tokens(tiny_tokenizer, TEXTS[1] * 3), seconds=2.0)
    assert errors == []
