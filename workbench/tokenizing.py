"""Tokenizer calls that are safe when several threads share one tokenizer.

A fast (Rust-backed) tokenizer keeps its padding and truncation settings in the Rust object and sets them on every
call, so two threads sharing one can switch each other's padding off in the middle of a call. The app does exactly
that: request threads measure a dialogue (`generation.count_tokens`, no padding) while the model set's batcher thread
pads a batch. Under 20 concurrent users 15 requests failed at once with "Unable to create tensor ... padding=True"
(benchmarks.load, 2026-12-05), and three threads counting beside one padding thread broke 48 padded calls in 3 s.
Every tokenizer call in the serving path goes through `encode`, under one lock: tokenizing takes microseconds to a
millisecond, generating seconds.
"""

from __future__ import annotations

import threading

_LOCK = threading.RLock()


def encode(tokenizer, texts, **kwargs):
    """`tokenizer(texts, **kwargs)`, never at the same time as another `encode` in this process."""
    with _LOCK:
        return tokenizer(texts, **kwargs)
