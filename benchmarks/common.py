"""What every measure shares: interleaved timing, the naive reference paths, results, memory readings.

A measure times its naive path and our path in the same process, alternating their repetitions (A B, B A, A B ...)
so that drift (other load, thermal state, page cache) hits both alike, and reports medians. Each measure returns a
`Result`; the runner prints it and writes it to results/benchmarks/<measure>.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads only where a measure computes: the load-test client runs without it
    from workbench.generation import GenerationSettings

OUT_DIR = Path(__file__).resolve().parent.parent / "results" / "benchmarks"


class Skip(Exception):
    """A measure cannot run here (e.g. DialogSum is absent); the message says why."""


# ---------------------------------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Goal:
    """`ratio op target`, e.g. speed-up >= 4 or memory share <= 2.3."""

    ratio: str  # what the ratio is, e.g. "naive / ours (time)"
    op: str  # ">=" or "<="
    target: float

    def met(self, value: float) -> bool:
        return value >= self.target if self.op == ">=" else value <= self.target

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {self.target:g}×"


@dataclasses.dataclass
class Result:
    """One measure: the headline numbers (medians), the ratio against its goal, and every detail behind them."""

    measure: str
    title: str
    unit: str
    naive: float | None
    ours: float | None
    ratio: float | None
    goal: Goal | None
    rows: list[dict] = dataclasses.field(default_factory=list)  # extra rows: variants, per-family numbers
    checks: dict[str, bool] = dataclasses.field(default_factory=dict)  # must hold besides the ratio (quality)
    details: dict = dataclasses.field(default_factory=dict)  # settings, raw samples, checks
    notes: list[str] = dataclasses.field(default_factory=list)
    why: dict = dataclasses.field(default_factory=dict)  # on a miss: profile of ours, bounds, what was tried (why.py)
    seconds: float = 0.0

    @property
    def passed(self) -> bool | None:
        if self.goal is None or self.ratio is None:
            return None
        return self.goal.met(self.ratio) and all(self.checks.values())

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "info"}[self.passed]

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["goal"] = None if self.goal is None else {**dataclasses.asdict(self.goal), "text": str(self.goal)}
        d.update(passed=self.passed, verdict=self.verdict, machine=machine())
        return d


def machine() -> dict:
    import torch

    from workbench import modeling

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "bf16": modeling.cpu_has_bf16(),
            "torch": torch.__version__, "python": platform.python_version(),
            "processor": _cpu_name(), **cpu_description()}


EMULATION_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                 "FBGEMM_ENABLE_INSTRUCTIONS", "WORKBENCH_CPU_KIND")


def cpu_description() -> dict:
    """The CPU kind serving decided on (modeling.cpu_kind), the flags the chip reports, what PyTorch's kernels
    dispatch to, and any variables that cap the instruction sets (how an AVX2-only CPU is emulated)."""
    import torch

    from workbench import modeling

    return {"cpu_kind": modeling.cpu_kind(), "cpu_flags": modeling.cpu_flags(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa_caps": {k: os.environ[k] for k in EMULATION_ENV if os.environ.get(k)}}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "tokens/s":
        return f"{value:,.0f} tok/s"
    return f"{value:.3g} {unit}"


# ---------------------------------------------------------------------------------------------------- timing


def interleaved(variants: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Wall-clock seconds of each variant, `reps` times, in alternating order (ABAB... becomes AB BA AB ...)."""
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------------------------------------- processes


def rss_mb(pid: int | None = None) -> dict[str, float] | None:
    """A process's resident memory now (VmRSS) and at its peak (VmHWM), in MiB: this process by default; None when
    the process has gone."""
    try:
        lines = Path(f"/proc/{pid or 'self'}/status").read_text().splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields.get("VmRSS", 0.0), "peak": fields.get("VmHWM", 0.0)}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for an app started by a measure)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------- quality


def agreement(reference: dict[str, list[str]], candidate: dict[str, list[str]], rows: list[dict]) -> dict:
    """Per slot of `reference`: outputs identical to the reference's, ROUGE-1 (best over each row's references) for
    both, and the paired ROUGE-1 difference with its 95% bootstrap CI; the totals and the largest |difference|."""
    from workbench import scoring

    refs = [r["references"] for r in rows]
    per_slot = {}
    for slot in reference:
        before = [s["rouge1"] for s in scoring.rouge_per_example(reference[slot], refs)]
        after = [s["rouge1"] for s in scoring.rouge_per_example(candidate[slot], refs)]
        identical = sum(a == b for a, b in zip(reference[slot], candidate[slot]))
        diff = scoring.paired_diff_ci(after, before)
        per_slot[slot] = {"outputs": len(rows), "identical": identical,
                          "identical_share": round(identical / len(rows), 4),
                          "rouge1_fp32": round(sum(before) / len(rows), 4), "rouge1": round(sum(after) / len(rows), 4),
                          "rouge1_delta": round(diff["mean"], 4),
                          "rouge1_delta_ci": [round(diff["ci_low"], 4), round(diff["ci_high"], 4)]}
    outputs = sum(v["outputs"] for v in per_slot.values())
    identical = sum(v["identical"] for v in per_slot.values())
    return {"outputs": outputs, "identical": identical, "identical_share": round(identical / outputs, 4),
            "max_abs_rouge1_delta": max(abs(v["rouge1_delta"]) for v in per_slot.values()), "per_slot": per_slot}


# ---------------------------------------------------------------------------------------------------- naive path


def naive_generate(model, tokenizer, prompt: str, settings: GenerationSettings) -> str:
    """One prompt, one model, fp32, no batching: how the reference notebooks generated (per example), with the
    model's own copy bias if it was trained with one (part of its logits)."""
    from workbench.generation import copy_bias_processors

    inputs = tokenizer(prompt, return_tensors="pt", truncation=True, max_length=512)
    out = model.generate(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **settings.to_kwargs(),
                         **copy_bias_processors(model, inputs.input_ids, tokenizer.pad_token_id, settings))
    return tokenizer.decode(out[0], skip_special_tokens=True).strip()


@contextlib.contextmanager
def environment(name: str, value: str | None):
    """`name` set to `value` inside the block (None: left as it is), restored after."""
    if value is None:
        yield
        return
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
