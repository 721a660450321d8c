"""`auto` precision per CPU kind: how the kind is detected (flags, what the kernels may use, the override), what
`auto` serves on each kind and why, and that the benchmarks record the CPU they ran on."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from tests import ui_fixtures as uf
from tests.conftest import DIALOGUES
from workbench import modeling, paths

ALL_FLAGS = dict.fromkeys(modeling.CPU_FLAGS, False)


@pytest.fixture
def fake_cpu(monkeypatch):
    """Pretend to run on a CPU with these flags and this PyTorch kernel capability."""
    monkeypatch.delenv(modeling.CPU_KIND_ENV, raising=False)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)

    def pretend(flags: tuple[str, ...], capability: str):
        monkeypatch.setattr(modeling, "cpu_flags", lambda: {**ALL_FLAGS, **dict.fromkeys(flags, True)})
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)

    return pretend


def test_kind_follows_the_flags_and_what_the_kernels_may_use(fake_cpu, monkeypatch):
    fake_cpu(("avx2", "avx512f", "avx512_bf16"), "AVX512")
    assert modeling.cpu_kind() == "avx512_bf16" and modeling.cpu_has_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN's bf16 matmuls are emulated from here on
    assert modeling.cpu_kind() == "avx2" and not modeling.cpu_has_bf16()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    fake_cpu(("avx2", "avx512f", "avx512_bf16"), "AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert modeling.cpu_kind() == "avx2"
    fake_cpu(("avx2", "amx_tile", "amx_bf16"), "AVX512")
    assert modeling.cpu_kind() == "avx512_bf16"
    fake_cpu(("avx2",), "AVX2")
    assert modeling.cpu_kind() == "avx2"
    fake_cpu((), "DEFAULT")
    assert modeling.cpu_kind() == "basic"


def test_the_kind_can_be_forced_and_a_bad_value_is_refused(fake_cpu, monkeypatch):
    fake_cpu(("avx2",), "AVX2")
    monkeypatch.setenv(modeling.CPU_KIND_ENV, "avx512_bf16")
    assert modeling.cpu_kind() == "avx512_bf16"
    monkeypatch.setenv(modeling.CPU_KIND_ENV, "avx9")
    with pytest.raises(ValueError, match="WORKBENCH_CPU_KIND='avx9': expected one of avx512_bf16, avx2, basic"):
        modeling.cpu_kind()


def test_auto_serves_per_kind_and_says_why(monkeypatch):
    monkeypatch.setenv(modeling.CPU_KIND_ENV, "avx512_bf16")
    bf16 = modeling.serving_precision("auto", "cpu")
    assert bf16.key == "bf16" and "avx512_bf16 CPU" in bf16.reason and modeling.BF16_WHY in bf16.reason
    monkeypatch.setenv(modeling.CPU_KIND_ENV, "avx2")
    avx2 = modeling.serving_precision("auto", "cpu")
    assert avx2.key == ("int8-dynamic" if modeling.AVX2_AUTO == "int8-dynamic" else "fp32")
    assert avx2.reason.startswith("auto on an avx2 CPU (no native bf16)") and modeling.AVX2_WHY in avx2.reason
    assert modeling.serving_precision("bf16", "cpu").dtype == torch.bfloat16  # a named dtype is served as named
    monkeypatch.setenv(modeling.CPU_KIND_ENV, "basic")
    basic = modeling.serving_precision("auto", "cpu")
    assert basic.key == "fp32" and "basic CPU" in basic.reason
    assert modeling.Precision(torch.float32, reason="a") == modeling.Precision(torch.float32, reason="b")


def test_emulation_variables_make_this_cpu_an_avx2_one():
    """What the benchmarks set to measure an AVX2-only CPU here; they must reach the kernels, not only our check."""
    code = ("import torch; from workbench import modeling; import time\n"
            "a, b = torch.randn(64, 512, dtype=torch.bfloat16), torch.randn(512, 512, dtype=torch.bfloat16)\n"
            "print(modeling.cpu_kind(), torch.backends.cpu.get_cpu_capability())")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    env.pop(modeling.CPU_KIND_ENV, None)
    done = subprocess.run([sys.executable, "-c", code], cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    kind, capability = done.stdout.split()
    has_avx2 = modeling.cpu_flags()["avx2"]
    assert (kind, capability) == (("avx2", "AVX2") if has_avx2 else ("basic", capability))


def test_dynamic_int8_serves_quantized_layers_and_leaves_lora_alone(tmp_path, tiny_tokenizer, tiny_model_dir,
                                                                    monkeypatch):
    from workbench.modelset import ModelSet, ModelSetConfig

    if not modeling.dynamic_int8_available():
        with pytest.raises(ValueError, match="int8-dynamic needs"):
            modeling.serving_precision("int8-dynamic", "cpu")
        return
    monkeypatch.setattr(paths, "STORE_DIR", uf.build_family(tmp_path, tiny_tokenizer, tiny_model_dir))
    config = ModelSetConfig.load(uf.write_config(tmp_path / "models.yaml"))
    ms = ModelSet(dataclasses.replace(config, dtype="int8-dynamic"), device="cpu", max_batch=1)
    assert ms.precision.key == "int8-dynamic" and not ms.precision.batch_invariant
    layers = [m for n, m in ms.base_model.named_modules() if n.endswith(("q.base_layer", "wo", "lm_head.head"))]
    assert layers and all("quantized.dynamic" in type(m).__module__ for m in layers)  # torch.ao's dynamic Linear
    assert isinstance(ms.full_model.lm_head, modeling.ExactTopLogits)
    assert all(isinstance(m, modeling.RowwiseLinear) for n, m in ms.base_model.named_modules()
               if n.endswith(("lora_A.lora", "lora_B.lora")))
    out = ms.summarize(dict.fromkeys(uf.REPOS, f"Summarize: {DIALOGUES[0][0]}"))
    assert all(isinstance(s.text, str) and s.error is None for s in out.values())


def test_the_header_says_which_precision_auto_chose_and_why(tmp_path, tiny_tokenizer, tiny_model_dir, monkeypatch):
    from workbench.app_service import WorkbenchService
    from workbench.modelset import ModelSet, ModelSetConfig

    monkeypatch.setattr(paths, "STORE_DIR", uf.build_family(tmp_path, tiny_tokenizer, tiny_model_dir))
    config = dataclasses.replace(ModelSetConfig.load(uf.write_config(tmp_path / "models.yaml")), dtype="auto")
    monkeypatch.setenv(modeling.CPU_KIND_ENV, "avx2")
    note = WorkbenchService(ModelSet(config, device="cpu"), results_dir=tmp_path).status_summary()["precision_note"]
    assert note.startswith(("fp32: the reference precision (auto on an avx2 CPU",
                            "int8 dynamic (torch.ao), float32")) and "avx2 CPU (no native bf16)" in note
    monkeypatch.setenv(modeling.CPU_KIND_ENV, "avx512_bf16")
    ms = ModelSet(config, device="cpu")
    note = WorkbenchService(ms, results_dir=tmp_path).status_summary()["precision_note"]
    assert "(auto on an avx512_bf16 CPU" in note and note.startswith(str(ms.precision))


def test_benchmark_json_records_the_cpu_kind_and_flags(monkeypatch):
    from benchmarks.common import machine

    monkeypatch.setenv(modeling.CPU_KIND_ENV, "avx2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    info = machine()
    assert info["cpu_kind"] == "avx2" and info["bf16"] is False
    assert set(info["cpu_flags"]) == set(modeling.CPU_FLAGS)
    assert info["isa_caps"] == {"ATEN_CPU_CAPABILITY": "avx2", modeling.CPU_KIND_ENV: "avx2"}
    assert "/" not in json.dumps(info).replace("/s", "")  # no paths of the machine
