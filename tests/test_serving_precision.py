"""benchmarks/precision.py's parts on tiny models: each precision is loaded the way the app serves it, revisions are
pinned for the whole run, and the comparison with fp32 counts what it says it counts."""

from __future__ import annotations

import os

import pytest
import torch

from tests import ui_fixtures as uf
from tests.conftest import DIALOGUES
from workbench import modeling, paths


@pytest.fixture(scope="module")
def family(tmp_path_factory, tiny_tokenizer, tiny_model_dir):
    root = tmp_path_factory.mktemp("precision")
    patch = pytest.MonkeyPatch()
    patch.setattr(paths, "STORE_DIR", uf.build_family(root, tiny_tokenizer, tiny_model_dir))
    yield root
    patch.undo()


def test_each_precision_loads_as_the_app_serves_it_on_pinned_revisions(family, tmp_path):
    from benchmarks import precision
    from workbench.store import LocalStore

    revisions = {slot: {"ref": repo, "revision": LocalStore().head(repo)} for slot, repo in uf.REPOS.items()}
    config = precision.pinned_config(revisions, tmp_path)
    LocalStore().publish(LocalStore().resolve(uf.REPOS["lora"]), uf.REPOS["ppo"])  # republished mid-run
    assert LocalStore().head(uf.REPOS["ppo"]) != revisions["ppo"]["revision"]
    fp32 = precision.load("fp32", config)
    assert fp32.precision.key == "fp32"
    assert {s: fp32.status[s].revision for s in uf.REPOS} == {s: v["revision"] for s, v in revisions.items()}
    this_cpu = modeling.cpu_has_bf16
    without_bf16 = precision.load("int8+fp32", config)
    assert modeling.cpu_has_bf16 is this_cpu  # the pretend CPU is gone again
    assert os.environ.get(modeling.CPU_KIND_ENV) is None
    if modeling.int8_kernel_available(torch.float32):
        assert without_bf16.precision.key == "int8+fp32"
        prompt = [f"Summarize: {DIALOGUES[0][0]}"]
        assert all(isinstance(t[0], str) for t in without_bf16.generate_slots(list(uf.REPOS), prompt).values())
    else:
        assert without_bf16 is None
    dynamic = precision.load("int8-dynamic", config)  # the AVX2 candidate
    if modeling.dynamic_int8_available():
        assert dynamic.precision.key == "int8-dynamic" and dynamic.precision.dtype == torch.float32
    else:
        assert dynamic is None


def test_comparison_counts_identical_outputs_and_the_rouge_change():
    """benchmarks.common.agreement: what both the precision and the evaluation measures report against fp32."""
    from benchmarks.common import agreement
    from workbench.modelset import SLOTS

    rows = [{"references": ["the cat sat on the mat"]}, {"references": ["they meet at noon"]}]
    reference = {slot: ["the cat sat on the mat", "they meet at noon"] for slot in SLOTS}
    candidate = {**reference, "ppo": ["the cat sat on the mat", "nothing in common"]}
    out = agreement(reference, candidate, rows)
    assert (out["outputs"], out["identical"], out["identical_share"]) == (8, 7, 0.875)
    assert out["per_slot"]["ppo"]["identical"] == 1 and out["per_slot"]["ppo"]["rouge1_delta"] == -0.5
    assert out["per_slot"]["base"]["rouge1_delta"] == 0 and out["max_abs_rouge1_delta"] == 0.5
    some = agreement({"lora": reference["lora"]}, candidate, rows)  # only the slots that loaded are compared
    assert set(some["per_slot"]) == {"lora"} and some["outputs"] == 2
    assert set(modeling.cpu_flags()) == {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                                         "amx_int8"}
