"""Where the app meets the Hub: fallbacks bring the base they need, every slot says which family it comes from, a
dropped toxicity scorer says why, and everything runs on one device.

The Hub is simulated: `store.HubStore` is replaced by a dictionary of repo id -> folder that answers "repository not
found" for anything else (what the real Hub says before a user has pushed their adapters). Its `google/flan-t5-base`
is a tiny T5 of *another* size than the tiny demo-like family in the local store, so an adapter attached to the
wrong base fails on shapes, as a demo adapter on the real FLAN-T5-base does.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from tests import ui_fixtures as uf
from tests.conftest import DIALOGUES, TINY_ARCH
from workbench import modeling, paths, prompts, store
from workbench.generation import GenerationSettings, generate
from workbench.modelset import FALLBACK, ModelSet, ModelSetConfig, ModelSetError

OTHER_ARCH = {**TINY_ARCH, "d_model": 48, "d_ff": 96, "d_kv": 12}  # same layout, another size
HUB_BASE = "google/flan-t5-base"
HUB_CONFIG = {
    "base": {"ref": HUB_BASE, "fallback": uf.REPOS["base"]},
    "full": {"ref": "you/flan-t5-base-dialogsum-full", "fallback": uf.REPOS["full"]},
    "lora": {"ref": "you/flan-t5-base-dialogsum-lora", "fallback": uf.REPOS["lora"]},
    "ppo": {"ref": "you/flan-t5-base-dialogsum-ppo", "fallback": uf.REPOS["ppo"]},
}
SETTINGS = GenerationSettings(max_new_tokens=8)
PROMPT = prompts.zero_shot(DIALOGUES[1][0])


class FakeHub:
    """Stands in for `store.HubStore`: serves the folders in `REPOS`, answers "not found" for anything else."""

    REPOS: dict = {}

    def resolve(self, repo_id, revision="main", *, not_local=None):
        if repo_id in self.REPOS:
            return self.REPOS[repo_id]
        raise store.StoreError(f"{repo_id}@{revision}: could not load from the Hub: repository not found, or private "
                               "and not visible to your token")


def other_arch_adapter(base_dir, folder):
    """A LoRA adapter trained (randomly) for the other-architecture base, as a user's pushed adapter would be."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(7)
    model = get_peft_model(modeling.load_model(base_dir, dtype="fp32", device="cpu"),
                           LoraConfig(r=4, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM",
                                      init_lora_weights=False))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory, tiny_tokenizer, tiny_model_dir):
    """A local store with the tiny family (test/tiny-*), and a simulated Hub holding an other-architecture base."""
    root = tmp_path_factory.mktemp("families")
    patch = pytest.MonkeyPatch()
    patch.setattr(paths, "STORE_DIR", uf.build_family(root, tiny_tokenizer, tiny_model_dir))
    patch.setattr(paths, "RESULTS_DIR", root / "results")
    other = root / "hub" / "flan-t5-base"
    modeling.build_model(modeling.demo_config(len(tiny_tokenizer), **OTHER_ARCH), seed=5).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    patch.setattr(FakeHub, "REPOS", {HUB_BASE: other})
    patch.setattr(store, "HubStore", FakeHub)
    yield {"root": root, "other_base": other,
           "other_lora": other_arch_adapter(other, root / "hub" / "other-lora")}
    patch.undo()


def modelset(tmp_path, **slots) -> ModelSet:
    return ModelSet(ModelSetConfig.load(uf.write_config(tmp_path / "models.yaml", **slots)), device="cpu")


def alone(base_dir, adapter_dir=None) -> str:
    """The greedy output of one model loaded on its own (no sharing, no mixed batch)."""
    from peft import PeftModel

    model = modeling.load_model(base_dir, dtype="fp32", device="cpu")
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    return generate(model, modeling.load_tokenizer(base_dir), [PROMPT], SETTINGS)[0]


def test_hub_base_of_another_size_and_missing_adapters_serve_all_four_slots(hub, tmp_path):
    """configs/models/hub.yaml before the user pushed anything: the Hub's base serves the base slot; full, LoRA and
    PPO fall back to the demo-like family, LoRA/PPO on that family's own base (a second copy), none unavailable."""
    from workbench.app_service import WorkbenchService
    from workbench.ui import compare, models

    ms = modelset(tmp_path, **HUB_CONFIG)
    assert ms.available == ["base", "full", "lora", "ppo"], {s: st.error for s, st in ms.status.items()}
    assert ms.status["base"].ref == HUB_BASE and ms.status["base"].family_label == f"{HUB_BASE} family"
    for slot in ("full", "lora", "ppo"):
        st = ms.status[slot]
        assert (st.ref, st.family) == (uf.REPOS[slot], FALLBACK)
        assert st.family_label == f"fallback: {uf.REPOS['base']} family"
        assert "repository not found" in st.note
    assert sorted(map(sorted, ms.call_groups(["base", "full", "lora", "ppo"]))) == [["base"], ["full"],
                                                                                   ["lora", "ppo"]]
    out = {s: r.text for s, r in ms.summarize({s: PROMPT for s in ("base", "full", "lora", "ppo")}, SETTINGS).items()}
    tiny_base = store.resolve(uf.REPOS["base"])
    assert out["base"] == alone(hub["other_base"])
    assert out["lora"] == alone(tiny_base, store.resolve(uf.REPOS["lora"]))
    assert out["ppo"] == alone(tiny_base, store.resolve(uf.REPOS["ppo"]))
    assert out["full"] == alone(store.resolve(uf.REPOS["full"]))
    assert ms.generate_slots(["base", "lora", "ppo"], [PROMPT], SETTINGS) == {s: [out[s]] for s in ("base", "lora",
                                                                                                     "ppo")}
    service = WorkbenchService(ms, results_dir=tmp_path)
    result = service.compare(DIALOGUES[1][0])
    assert all(entry.available and entry.family for entry in result.models.values())
    assert result.models["lora"].shared_call and not result.models["base"].shared_call
    assert f"fallback: {uf.REPOS['base']} family" in compare.card_html("PPO", result.models["ppo"])
    header = models.status_html(service.status_summary())
    assert header.count(f"fallback: {uf.REPOS['base']} family") == 3 and f"{HUB_BASE} family" in header


def test_configured_adapters_need_their_own_base_and_fall_back_with_a_reason(hub, tmp_path):
    """The user's adapters are on the Hub but their base is not reachable: the base slot falls back to the demo-like
    base, and the user's adapters are not attached to it (wrong shapes): they fall back too, saying why."""
    FakeHub.REPOS = {"you/lora": hub["other_lora"]}  # the Hub now has the adapter but not the base
    try:
        ms = modelset(tmp_path, **{**HUB_CONFIG, "lora": {"ref": "you/lora", "fallback": uf.REPOS["lora"]}})
    finally:
        FakeHub.REPOS = {HUB_BASE: hub["other_base"]}
    assert ms.available == ["base", "full", "lora", "ppo"]
    assert {ms.status[s].family_label for s in ms.available} == {f"fallback: {uf.REPOS['base']} family"}
    assert f"runs on {HUB_BASE}, which did not load" in ms.status["lora"].note
    assert ms.call_groups(["base", "lora", "ppo"]) == [["base", "lora", "ppo"]]  # one shared copy again
    out = ms.summarize({"lora": PROMPT}, SETTINGS)["lora"].text
    assert out == alone(store.resolve(uf.REPOS["base"]), store.resolve(uf.REPOS["lora"]))


def test_a_fallback_adapter_runs_on_the_base_it_names_when_the_base_slot_has_no_fallback(hub, tmp_path):
    ms = modelset(tmp_path, base={"ref": HUB_BASE}, full={"ref": uf.REPOS["full"]},
                  lora=HUB_CONFIG["lora"], ppo={"ref": "you/missing-ppo"})
    assert [s for s in ("base", "full", "lora") if ms.status[s].ok] == ["base", "full", "lora"]
    assert ms.status["lora"].family_label == "fallback: test/tiny-base family"  # from its adapter_config.json
    assert "repository not found" in ms.status["ppo"].error
    out = ms.summarize({"lora": PROMPT}, SETTINGS)["lora"].text
    assert out == alone(store.resolve(uf.REPOS["base"]), store.resolve(uf.REPOS["lora"]))


def test_an_adapter_for_another_base_is_refused_before_it_touches_the_shared_base(hub, tmp_path):
    from workbench.store import LocalStore

    LocalStore().publish(hub["other_lora"], "test/other-lora")
    ms = modelset(tmp_path, lora={"ref": "test/other-lora"})
    assert not ms.status["lora"].ok and "does not fit test/tiny-base" in ms.status["lora"].error
    assert ms.status["ppo"].ok
    base_dir = store.resolve(uf.REPOS["base"])
    assert ms.summarize({"base": PROMPT}, SETTINGS)["base"].text == alone(base_dir)  # no stray LoRA layers
    assert ms.summarize({"ppo": PROMPT}, SETTINGS)["ppo"].text == alone(base_dir, store.resolve(uf.REPOS["ppo"]))


def test_one_device_for_every_model_and_the_scorer(hub, tmp_path, monkeypatch):
    from workbench import toxicity

    asked = []
    real = toxicity.load_scorer
    monkeypatch.setattr(toxicity, "load_scorer", lambda spec, device=None: asked.append(device) or real(spec))
    path = uf.write_config(tmp_path / "models.yaml")
    path.write_text(path.read_text() + "device: cpu\n")
    ms = ModelSet(ModelSetConfig.load(path))
    assert ms.device == torch.device("cpu") and asked == ["cpu"]
    assert {p.device for e in ms.engines for p in e.model.parameters()} == {torch.device("cpu")}
    assert {b.device for e in ms.engines for b in e.model.buffers()} <= {torch.device("cpu")}
    path.write_text(path.read_text().replace("device: cpu", "device: gpu0"))
    with pytest.raises(ModelSetError, match="device: expected auto, cpu, cuda or cuda:N, got 'gpu0'"):
        ModelSetConfig.load(path)
    if not torch.cuda.is_available():
        with pytest.raises(ModelSetError, match="CUDA is not available on this machine"):
            ModelSet(ModelSetConfig.load(uf.write_config(tmp_path / "models.yaml")), device="cuda")


def test_a_dropped_hf_scorer_says_why_everywhere_and_logs_once(hub, tmp_path, caplog):
    from workbench.app_service import WorkbenchService
    from workbench.ui import models, toxicity

    path = uf.write_config(tmp_path / "models.yaml")
    path.write_text(path.read_text().replace("toxicity: profanity-check",
                                             "toxicity: hf:you/missing-clf\ntoxicity_fallback: profanity-check"))
    with caplog.at_level(logging.WARNING, logger="workbench.modelset"):
        ms = ModelSet(ModelSetConfig.load(path), device="cpu")
        ms.reload()
    assert ms.scorer.name == "profanity-check" and ms.scorer_error is None
    assert ms.scorer_note.startswith("hf:you/missing-clf: you/missing-clf@main: could not load from the Hub: "
                                     "repository not found")
    assert ms.scorer_note.endswith("scoring with profanity-check instead")
    logged = [r.getMessage() for r in caplog.records if "missing-clf" in r.getMessage()]
    assert len(logged) == 1 and "repository not found" in logged[0]
    service = WorkbenchService(ms, results_dir=tmp_path)
    assert "repository not found" in models.status_html(service.status_summary())
    assert "repository not found" in toxicity.scorer_note_html(service)
    assert "repository not found" in service.score("you idiot")["scorer_note"]
    assert "repository not found" in toxicity.score_html(service.score("you idiot"))
    assert "Fallback scorer: hf:you/missing-clf" in service.toxicity_sample(2, 0, "demo")["message"]


def test_header_states_how_far_the_served_precision_is_from_fp32(tmp_path):
    from workbench.app_service import precision_note

    int8 = modeling.Precision(torch.bfloat16, int8_weights=True)
    assert (int8.key, modeling.Precision(torch.float32).key) == ("int8+bf16", "fp32")
    assert precision_note(modeling.Precision(torch.float32), tmp_path) == "fp32: the reference precision"
    assert precision_note(int8, tmp_path) == "int8 weights, bfloat16: outputs can differ from fp32 (not measured " \
                                             "for this precision)"
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "precision.json").write_text(json.dumps({"precisions": [
        {"key": "int8+bf16", "outputs": 960, "identical_share": 0.875, "max_abs_rouge1_delta": 0.0042}]}))
    assert precision_note(int8, tmp_path) == ("int8 weights, bfloat16: 88% of 960 demo test outputs identical to "
                                              "fp32, ROUGE-1 within 0.004")
    (tmp_path / "benchmarks" / "precision.json").write_text(json.dumps({
        "models": {"lora": {"ref": "demo/lora", "revision": "aaa"}}, "precisions": [
            {"key": "int8+bf16", "outputs": 960, "identical_share": 0.875, "max_abs_rouge1_delta": 0.0042}]}))
    assert precision_note(int8, tmp_path, {"demo/lora": "aaa", "demo/base": "bbb"}).endswith("within 0.004")
    assert precision_note(int8, tmp_path, {"demo/lora": "ccc"}).endswith(  # the served adapter was rebuilt since
        "within 0.004 (measured on earlier revisions of these models)")
