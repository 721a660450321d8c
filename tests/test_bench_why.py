"""benchmarks/why.py: what `make bench` prints after a measure that misses its goal (a profile of our path, the
bound its design sets, how a step's cost grows with its rows, what was tried), checked on tiny models."""

from __future__ import annotations

import types

import pytest
import torch

from benchmarks import why
from benchmarks.common import Goal, Result


@pytest.mark.parametrize(("op", "kind"), [
    ("aten::addmm", "dense matmuls"), ("aten::mm", "dense matmuls"), ("mkldnn::_linear_pointwise", "dense matmuls"),
    ("aten::bmm", "attention batched matmuls"), ("aten::baddbmm", "attention batched matmuls"),
    ("quantized::linear_dynamic", "int8 kernels"), ("aten::_weight_int8pack_mm", "int8 kernels"),
    ("aten::add", "elementwise"), ("aten::softmax", "elementwise"), ("aten::copy_", "copies and layout"),
    ("aten::cat", "copies and layout"), ("aten::frobnicate", "other operators"),
])
def test_operators_are_sorted_into_kinds_of_work(op, kind):
    assert why.kind_of(op) == kind


def test_profile_finds_where_the_time_goes():
    """A run that is almost all one dense product is profiled as such: its kinds, top operators, wall time."""
    a, b = torch.randn(256, 512), torch.randn(512, 512)

    def work():
        for _ in range(30):
            torch.mm(a, b)
        a.add(1.0)

    prof = why.profile(work)
    assert prof["wall_s"] > 0 and prof["operators_ms"] > 0
    assert next(iter(prof["kinds"])) == "dense matmuls" and prof["kinds"]["dense matmuls"]["share"] > 0.8
    assert prof["top"][0]["op"] == "aten::mm" and prof["top"][0]["calls"] == 30
    assert abs(sum(k["share"] for k in prof["kinds"].values()) - 1) < 0.01
    assert 0 <= prof["outside_operators_share"] <= 1


def test_profile_sees_work_done_on_another_thread():
    """The app's model set generates on its micro-batcher's thread: the profile must count that thread's operators."""
    import threading

    a, b = torch.randn(128, 256), torch.randn(256, 256)

    def work():
        worker = threading.Thread(target=lambda: [torch.mm(a, b) for _ in range(20)])
        worker.start()
        worker.join()

    prof = why.profile(work)
    assert prof["top"] and prof["top"][0]["op"] == "aten::mm" and prof["top"][0]["calls"] == 20

def _modelset(model, dtype=torch.float32):
    return types.SimpleNamespace(engines=[types.SimpleNamespace(model=model)], dtype=dtype)


def test_weight_reads_count_shared_weights_once_and_give_the_design_ceiling(tiny_model_dir):
    """Four fp32 copies against one bf16 copy read 8x the bytes: the most a step bound by memory can gain. A weight
    two slots share (the base under its adapters) is read once."""
    from workbench import modeling

    naive = {s: (modeling.load_model(tiny_model_dir), None) for s in ("base", "full", "lora", "ppo")}
    one = why.weight_bytes([naive["base"][0]])
    base = naive["base"][0]
    assert one == sum(t.numel() * t.element_size() for t in [*base.parameters(), *base.buffers()])
    assert why.weight_bytes([naive["base"][0], naive["base"][0]]) == one  # the same tensors: counted once
    ours = modeling.load_model(tiny_model_dir, dtype="bf16")
    bound = why.weight_reads(naive, _modelset(ours, torch.bfloat16))
    assert bound["ceiling"] == pytest.approx(8.0, rel=0.02)


def test_row_scaling_times_the_served_decoder_layer(tiny_model_dir):
    from workbench import modeling

    model = modeling.load_model(tiny_model_dir)
    scaling = why.row_scaling(_modelset(model), rows=(1, 4, 16), reps=5)
    assert set(scaling["ms"]) == {"1", "4", "16"} and all(v > 0 for v in scaling["ms"].values())
    assert scaling["relative_to_one_row"]["1"] == 1.0 and scaling["dtype"] == "float32"
    assert "->" in scaling["layer"]
    line = why.scaling_line(scaling)
    assert "16 rows" in line and "cost against one row" in line
    # a CTranslate2 copy has no torch layer to time: nothing is claimed
    assert why.row_scaling(_modelset(types.SimpleNamespace(translator=object()))) is None


def test_a_miss_is_printed_with_its_reasons(capsys):
    """`python -m benchmarks` prints a missed measure's why under its row: the sentence built from the measurements,
    the design bound, the rows, the profile and what was tried."""
    from benchmarks.__main__ import report

    goal = Goal("naive / ours (latency)", ">=", 4)
    bound = {"naive_mb": 3784.0, "ours_mb": 1892.0, "ceiling": 2.0}
    rows = {"layer": "DecodingLinear 768 -> 2048", "dtype": "float32", "ms": {"1": 0.2, "24": 1.6},
            "relative_to_one_row": {"1": 1.0, "24": 8.0}}
    prof = {"wall_s": 10.0, "operators_ms": 9000.0, "outside_operators_share": 0.1,
            "kinds": {"dense matmuls": {"ms": 6000.0, "share": 0.667}, "elementwise": {"ms": 3000.0, "share": 0.333}},
            "top": [{"op": "mkldnn::_linear_pointwise", "ms": 6000.0, "calls": 900, "kind": "dense matmuls"}]}
    result = Result("compare", "Compare", "s", 13.9, 10.8, 1.29, goal)
    result.why = {"summary": why.summary(1.29, goal, "fp32", bound=bound, rows=rows, prof=prof), "bound": bound,
                  "rows": rows, "profile": prof, "tried": ["oneDNN decoding steps: 0.86× -> 1.29×"]}
    assert result.verdict == "MISS"
    report(result)
    out = capsys.readouterr().out
    assert "why the goal is missed: ours (fp32) is 1.29×" in out and "cannot reach 4×" in out
    assert "24 rows costs 8.0× one row here: arithmetic bounds" in out and "dense matmuls take 67%" in out
    assert "at most 2.0×" in out and "mkldnn::_linear_pointwise" in out and "tried: oneDNN" in out


def test_the_summary_reads_the_row_costs_both_ways():
    """Flat row costs mean steps wait on weight reads (the design bound holds); costs that grow with the rows mean
    arithmetic bounds the steps. The sentence says which, from the figures."""
    goal = Goal("naive / ours (time)", ">=", 6)
    flat = {"relative_to_one_row": {"1": 1.0, "24": 1.46}}
    steep = {"relative_to_one_row": {"1": 1.0, "24": 14.0}}
    assert "costs only 1.46× one row here: steps wait on weight reads" in why.summary(3.4, goal, "fp32", rows=flat)
    assert "costs 14.0× one row here: arithmetic bounds" in why.summary(3.4, goal, "fp32", rows=steep)
    assert "would allow 8.0×" in why.summary(3.4, goal, "bf16", bound={"ceiling": 8.0})
    # with the naive time and a profile: what ours' matmuls alone allow (57 s naive, 9.5 s of matmuls: 6.0x)
    prof = {"wall_s": 17.0, "kinds": {"dense matmuls": {"ms": 9000.0, "share": 0.6},
                                      "int8 kernels": {"ms": 500.0, "share": 0.03}, "elementwise": {"ms": 5500.0}}}
    assert why.matmul_bound(57.0, prof) == {"matmul_s": 9.5, "ceiling": 6.0}
    assert "its matmuls alone took 9.5 s" in why.summary(3.4, goal, "fp32", prof=prof, naive_s=57.0)


def test_explain_gathers_the_measurements_for_a_miss(tiny_model_dir):
    """What compare and evaluate attach to a missed Result: the bound (only with the naive models), the row costs on
    the served layer, a profile of the given run, the summary built from them and the precision's tried list."""
    from workbench import modeling

    model = modeling.load_model(tiny_model_dir)
    models = types.SimpleNamespace(engines=[types.SimpleNamespace(model=model)], dtype=torch.float32,
                                   precision=types.SimpleNamespace(key="fp32"))
    result = Result("compare", "Compare", "s", 4.0, 2.0, 2.0, Goal("naive / ours (latency)", ">=", 4))
    ids = torch.tensor([[5, 6, 7, 1]])
    run = lambda: model.generate(input_ids=ids, max_new_tokens=3)  # noqa: E731
    tried = {"fp32": ["fp32 thing"], "reduced": ["bf16 thing"]}
    naive = {s: (modeling.load_model(tiny_model_dir), None) for s in ("base", "full", "lora", "ppo")}
    got = why.explain(result, "float32", models, run, tried, naive)
    assert got["bound"]["ceiling"] == pytest.approx(4.0, rel=0.02) and got["tried"] == ["fp32 thing"]
    assert set(got["rows"]["ms"]) == {"1", "3", "8", "24"} and got["profile"]["top"]
    assert got["summary"].startswith("ours (float32) is 2.00× the naive path, goal ≥ 4×")
    assert "bound" not in why.explain(result, "float32", models, run, tried)  # evaluate: no naive models given
