"""Why a measure missed its goal: what our path spends its time on, measured, and what was tried.

A measure that misses its goal (`Result.passed is False`) is followed, in the printed report and in its JSON, by
- a profile of one more run of our path under `torch.profiler`: self CPU time grouped by the kind of work (dense
  matmuls, attention's batched matmuls, int8 kernels, elementwise, copies and layout, other) with the top operators,
  and the share of the wall time outside any operator (Python, `generate`'s loop, the micro-batcher);
- where the design itself bounds the ratio (Compare: the bytes of weights each path reads per decoding step);
- what was tried, each with the figure it gave (the README's Performance section has the commands).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# (kind, operator-name fragments): the first kind whose fragment occurs in an operator's name takes it
KINDS = (
    ("int8 kernels", ("quantized::", "int8", "_weight_int8pack", "fbgemm", "qlinear", "quantize_per")),
    ("attention batched matmuls", ("aten::bmm", "aten::baddbmm")),
    ("dense matmuls", ("aten::addmm", "aten::mm", "_linear_pointwise", "mkldnn_linear", "aten::_mkl", "matmul")),
    ("elementwise", ("aten::add", "aten::mul", "aten::sub", "aten::div", "aten::pow", "aten::rsqrt", "aten::mean",
                     "aten::gelu", "aten::tanh", "softmax", "aten::where", "aten::masked_fill", "aten::neg",
                     "aten::exp", "aten::log", "aten::max", "aten::argmax", "aten::topk", "aten::eq", "aten::ne",
                     "aten::lt", "aten::gt", "aten::ge", "aten::le", "aten::clamp", "aten::abs", "aten::sum",
                     "aten::any", "aten::all", "aten::min", "aten::fill_", "aten::zero_", "aten::bitwise",
                     "aten::logical", "aten::isin", "aten::sort")),
    ("copies and layout", ("aten::copy_", "aten::to", "aten::_to_copy", "aten::cat", "aten::index", "aten::embedding",
                           "aten::clone", "aten::contiguous", "aten::empty", "aten::stack", "aten::gather",
                           "aten::scatter", "aten::repeat", "aten::expand", "aten::view", "aten::reshape",
                           "aten::transpose", "aten::permute", "aten::slice", "aten::select", "aten::t",
                           "aten::unsqueeze", "aten::squeeze", "aten::narrow", "aten::as_strided", "aten::new_")),
)


def kind_of(op: str) -> str:
    for kind, fragments in KINDS:
        if any(fragment in op for fragment in fragments):
            return kind
    return "other operators"


def profile(fn: Callable[[], object], top: int = 8) -> dict:
    """Run `fn` once under torch.profiler (CPU); return its wall time, self CPU time per kind of work (ms and share of
    the operators' total), the top operators by self time, and the share of the wall time outside any operator. The
    profiler adds a few microseconds per operator call, so the profiled run is a little slower than an unprofiled one."""
    from torch.profiler import ProfilerActivity, _ExperimentalConfig
    from torch.profiler import profile as torch_profile

    # every thread: the app's model set generates on its micro-batcher's thread, not on the caller's
    every_thread = _ExperimentalConfig(profile_all_threads=True)
    with torch_profile(activities=[ProfilerActivity.CPU], experimental_config=every_thread) as prof:
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_ms = sum(e.self_cpu_time_total for e in events) / 1000
    by_kind: dict[str, float] = {}
    for e in events:
        kind = kind_of(e.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + e.self_cpu_time_total / 1000
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "wall_s": round(wall, 3),
        "operators_ms": round(total_ms, 1),
        "kinds": {k: {"ms": round(v, 1), "share": round(v / total_ms, 3) if total_ms else 0.0}
                  for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top": [{"op": e.key, "ms": round(e.self_cpu_time_total / 1000, 1), "calls": e.count,
                 "kind": kind_of(e.key)} for e in ranked],
        # what is left of the wall time once the operators are taken off: Python and framework work between them
        "outside_operators_share": round(max(0.0, 1 - total_ms / (wall * 1000)), 3) if wall else None,
    }


def weight_bytes(models) -> int:
    """Bytes of distinct parameter and buffer storage in `models` (modules; shared tensors counted once): what a
    decoding step reads when every layer runs once per step."""
    seen, total = set(), 0
    for model in models:
        for tensor in [*model.parameters(), *model.buffers()]:
            key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
            if key not in seen:
                seen.add(key)
                total += tensor.untyped_storage().nbytes()
    return total


def weight_reads(naive_models: dict, modelset) -> dict:
    """What bounds Compare's ratio from its design: per decoding step the naive path reads every weight of four fp32
    models, ours those of its engines (one base carrying the adapters, and the full model) in the served precision.
    When a step is bound by how fast the weights come from memory, naive bytes / ours bytes is the most the ratio
    can reach; when it is bound by compute, less."""
    naive = sum(weight_bytes([model]) for model, _ in naive_models.values())
    ours = weight_bytes([engine.model for engine in modelset.engines if hasattr(engine.model, "parameters")])
    return {"naive_mb": round(naive / 2**20, 1), "ours_mb": round(ours / 2**20, 1),
            "ceiling": round(naive / ours, 2) if ours else None}


def lines(why: dict) -> list[str]:
    """The printed form of a measure's `why`."""
    out = [f"why the goal is missed: {why['summary']}"]
    if bound := why.get("bound"):
        out.append(f"  bound by design: weights read per decoding step, naive {bound['naive_mb']:,.0f} MB, ours "
                   f"{bound['ours_mb']:,.0f} MB -> at most {bound['ceiling']}× while a step waits on memory")
    if scaling := why.get("rows"):
        out.append(scaling_line(scaling))
    if prof := why.get("profile"):
        kinds = ", ".join(f"{k} {v['share']:.0%}" for k, v in prof["kinds"].items())
        out.append(f"  profile of ours (one run under torch.profiler, {prof['wall_s']:.2f} s wall, "
                   f"{prof['operators_ms'] / 1000:.2f} s of operator self time on all threads): {kinds}; outside "
                   f"any operator {prof['outside_operators_share']:.0%} of the wall time")
        out.append("    top operators: " + "; ".join(f"{t['op']} {t['ms']:.0f} ms ({t['calls']} calls)"
                                                       for t in prof["top"][:5]))
    for tried in why.get("tried", []):
        out.append(f"  tried: {tried}")
    return out


def row_scaling(modelset, rows=(1, 3, 8, 24), reps: int = 30) -> dict | None:
    """How a decoding step's cost grows with the rows it carries, on the layer ours serves: the first decoder block's
    feed-forward input product (`wi_0`, d_model -> d_ff, in the served precision and kernel), one position per row as
    in a decoding step. Cost proportional to rows means arithmetic bounds the step and batching saves little; flat
    means weight reads bound it and batching saves nearly all. Median milliseconds per call, and each row count's
    cost relative to one row."""
    import torch

    layer = None
    for engine in modelset.engines:
        model = engine.model
        if not hasattr(model, "named_modules"):
            return None  # CTranslate2 copies: no torch layer to time
        layer = next((m for name, m in model.named_modules()
                      if name.endswith(("decoder.block.0.layer.2.DenseReluDense.wi_0",
                                        "decoder.block.0.layer.2.DenseReluDense.wi"))), None)
        if layer is not None:
            break
    if layer is None:
        return None
    d_model = getattr(layer, "in_features", None) or layer.weight.shape[-1]
    ms = {}
    with torch.inference_mode():
        for n in rows:
            x = torch.randn(n, 1, d_model).to(modelset.dtype)
            for _ in range(3):
                layer(x)
            samples = []
            for _ in range(reps):
                start = time.perf_counter()
                layer(x)
                samples.append(time.perf_counter() - start)
            ms[n] = sorted(samples)[len(samples) // 2] * 1000
    return {"layer": f"{type(layer).__name__} {d_model} -> {getattr(layer, 'out_features', '?')}",
            "dtype": str(modelset.dtype).removeprefix("torch."),
            "ms": {str(n): round(v, 3) for n, v in ms.items()},
            "relative_to_one_row": {str(n): round(v / ms[rows[0]], 2) for n, v in ms.items()}}


def scaling_line(scaling: dict) -> str:
    costs = ", ".join(f"{n} rows {ms:.2f} ms" for n, ms in scaling["ms"].items())
    rel = ", ".join(f"{n}: {r}×" for n, r in scaling["relative_to_one_row"].items() if n != "1")
    return (f"  rows per decoding step ({scaling['layer']}, {scaling['dtype']}, the served kernel): {costs} "
            f"(cost against one row: {rel}; the closer to the row count, the less batching can save)")


def matmul_bound(naive_s: float, prof: dict) -> dict | None:
    """The most ours could gain with its matmuls as they are: the naive path's time over the time ours spent in dense
    and int8 matmuls alone in the profiled run, as if nothing else took time (the profiler's few microseconds per
    call make that time a little longer than unprofiled)."""
    kinds = prof.get("kinds") or {}
    matmul_ms = sum(kinds.get(k, {}).get("ms", 0.0) for k in ("dense matmuls", "int8 kernels"))
    if not matmul_ms or not prof.get("wall_s"):
        return None
    matmul_s = matmul_ms / 1000
    return {"matmul_s": round(matmul_s, 2), "ceiling": round(naive_s / matmul_s, 2)}


def summary(ratio: float, goal, precision: str, *, bound: dict | None = None, rows: dict | None = None,
            prof: dict | None = None, naive_s: float | None = None) -> str:
    """One sentence, from the measurements, of why `ratio` falls short of `goal`."""
    parts = [f"ours ({precision}) is {ratio:.2f}× the naive path, goal {goal}"]
    if bound and bound.get("ceiling"):
        if bound["ceiling"] < goal.target:
            parts.append(f"reading {bound['ceiling']}× fewer weight bytes per step than the naive path, it cannot "
                         f"reach {goal.target:g}× in {precision} where steps wait on memory")
        else:
            parts.append(f"its weight reads would allow {bound['ceiling']}×")
    if rows:
        most = max(rows["relative_to_one_row"], key=int)
        cost = rows["relative_to_one_row"][most]
        if cost <= int(most) / 4:
            parts.append(f"a decoding step of {most} rows costs only {cost}× one row here: steps wait on weight "
                         "reads, not arithmetic")
        else:
            parts.append(f"a decoding step of {most} rows costs {cost}× one row here: arithmetic bounds the steps, "
                         "so batching saves little of it")
    if prof and prof.get("kinds"):
        kind, share = next(iter(prof["kinds"].items()))
        parts.append(f"{kind} take {share['share']:.0%} of the operators' time")
        if naive_s and (matmuls := matmul_bound(naive_s, prof)):
            parts.append(f"its matmuls alone took {matmuls['matmul_s']} s, so with everything else free it would "
                         f"be {matmuls['ceiling']}× the naive path")
    return "; ".join(parts)


def explain(result, precision: str, models, run_ours: Callable[[], object], tried: dict[str, list[str]],
            naive_models: dict | None = None) -> dict:
    """What a missed measure is followed by: the weight bytes each path reads per step (when the naive models are
    given), how a decoding step's cost grows with its rows, a profile of one more run of ours, the sentence that reads
    them, and what was tried for the precision ours serves (`tried["fp32"]` or `tried["reduced"]`)."""
    bound = weight_reads(naive_models, models) if naive_models else None
    rows, prof = row_scaling(models), profile(run_ours)
    return {"summary": summary(result.ratio, result.goal, precision, bound=bound, rows=rows, prof=prof,
                               naive_s=result.naive),
            **({"bound": bound} if bound else {}), "rows": rows, "profile": prof,
            "tried": tried["fp32" if models.precision.key == "fp32" else "reduced"]}
