"""More than four slots: a models config names further adapter slots (e.g. `orpo`), every adapter is served from
the one base copy in the same mixed-adapter call, a slot missing from the store is unavailable with its reason while
the others serve, and Compare shows the chosen 2-6 of them. Plus the models config as a pydantic model: unknown keys
refused, `Literal` choices, one line naming the field.

Tiny models in a temporary store: the tiny family of tests/ui_fixtures plus two more LoRA adapters ("orpo", "cpo")
with weights of their own, so that any cross-talk between adapters would change the outputs.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tests import ui_fixtures as uf
from tests.conftest import DIALOGUES
from workbench import modeling, paths, prompts, store
from workbench.generation import GenerationSettings, generate
from workbench.modelset import Engine, ModelSet, ModelSetConfig, ModelSetError

EXTRA = {"orpo": "test/tiny-orpo", "cpo": "test/tiny-cpo"}
SIX = ["base", "full", "lora", "ppo", "orpo", "cpo"]
SETTINGS = GenerationSettings(max_new_tokens=12)


def tiny_adapter(base_dir, folder, seed: int):
    """A LoRA adapter on the tiny base with clearly non-zero weights of its own."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(modeling.load_model(base_dir, dtype="fp32", device="cpu"),
                           LoraConfig(r=4, lora_alpha=32, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM",
                                      init_lora_weights=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.mul_(3.0)
    model.save_pretrained(folder, safe_serialization=True)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": uf.REPOS["base"]}))
    return folder


@pytest.fixture(scope="module")
def six(tmp_path_factory, tiny_tokenizer, tiny_model_dir):
    """A store with base/full/lora/ppo and the orpo and cpo adapters; a config that names them and a seventh slot
    whose model is not in the store."""
    root = tmp_path_factory.mktemp("six")
    patch = pytest.MonkeyPatch()
    store_dir = uf.build_family(root, tiny_tokenizer, tiny_model_dir)
    patch.setattr(paths, "STORE_DIR", store_dir)
    patch.setattr(paths, "RESULTS_DIR", root / "results")
    for i, (slot, repo) in enumerate(EXTRA.items()):
        store.LocalStore(store_dir).publish(tiny_adapter(tiny_model_dir, root / "build" / slot, 200 + i), repo)
    config = uf.write_config(root / "models.yaml", orpo={"ref": EXTRA["orpo"], "kind": "adapter",
                                                         "label": "ORPO-tuned (LoRA)"},
                             cpo={"ref": EXTRA["cpo"], "kind": "adapter"},
                             later={"ref": "test/not-trained-yet", "kind": "adapter", "label": "Later"})
    yield ModelSet(ModelSetConfig.load(config), device="cpu")
    patch.undo()


def test_further_adapters_share_the_base_copy_and_a_missing_one_says_why(six):
    assert six.slots == [*SIX, "later"] and six.available == SIX
    assert six.label("orpo") == "ORPO-tuned (LoRA)" and six.label("cpo") == "CPO-tuned (LoRA)"
    assert six.engine_of("orpo") is six.engine_of("cpo") is six.engine_of("lora") is six.engine_of("base")
    assert six.call_groups(SIX) == [["base", "lora", "ppo", "orpo", "cpo"], ["full"]]
    later = six.status["later"]
    assert not later.ok and "test/not-trained-yet" in later.error and later.describe().startswith("Later: unavailable")
    answer = six.summarize({"later": "x", "base": "y"}, SETTINGS)
    assert answer["later"].text is None and "test/not-trained-yet" in answer["later"].error
    assert answer["base"].text is not None


def test_six_slots_in_one_mixed_adapter_call_each_as_if_alone(six, tiny_model_dir, monkeypatch):
    from peft import PeftModel

    calls = []
    real = Engine.generate
    monkeypatch.setattr(Engine, "generate", lambda self, slots, *a, **k: calls.append(list(slots)) or real(
        self, slots, *a, **k))
    prompt = prompts.zero_shot(DIALOGUES[0][0])
    got = {s: r.text for s, r in six.summarize(dict.fromkeys(SIX, prompt), SETTINGS).items()}
    assert sorted(map(sorted, calls)) == [["base", "cpo", "lora", "orpo", "ppo"], ["full"]]
    tokenizer = modeling.load_tokenizer(tiny_model_dir)
    for slot in ("orpo", "cpo", "lora"):
        base = modeling.load_model(tiny_model_dir, dtype="fp32", device="cpu")
        repo = EXTRA.get(slot) or uf.REPOS[slot]
        alone = PeftModel.from_pretrained(base, str(store.resolve(repo))).eval()
        assert got[slot] == generate(alone, tokenizer, [prompt], SETTINGS)[0], slot
    assert len({got["lora"], got["orpo"], got["cpo"]}) == 3, "the adapters must differ, or cross-talk goes unseen"


def test_compare_shows_the_chosen_two_to_six_and_votes_name_their_labels(six, tmp_path):
    from workbench.app_service import WorkbenchService
    from workbench.votes import Votes

    service = WorkbenchService(six, results_dir=tmp_path)
    assert service.default_slots() == ["base", "full", "lora", "ppo"]
    assert [s for _, s in service.slot_choices()] == [*SIX, "later"]
    result = service.compare(DIALOGUES[0][0], DIALOGUES[0][1], slots=["cpo", "base", "orpo", "later"])
    assert result.ok and result.slots == ["base", "orpo", "cpo", "later"]  # in the app's one order
    assert set(result.models) == {"base", "orpo", "cpo", "later"} and not result.models["later"].available
    assert result.models["orpo"].label == "ORPO-tuned (LoRA)" and result.models["orpo"].shared_call
    for bad, words in ((["base"], "from 2 to 6"), ([*SIX, "later"], "you chose 7"), (["base", "nope"], "nope")):
        refused = service.compare(DIALOGUES[0][0], slots=bad)
        assert not refused.ok and words in refused.message and refused.as_dict() == {
            "ok": False, "message": refused.message, "notices": [refused.message]}
    held = Votes.comparison(result, DIALOGUES[0][0])
    assert set(held["outputs"]) == {"base", "orpo", "cpo"}  # only what was shown and written
    answer = Votes("test/six-votes").save(held, best="orpo", unacceptable=["cpo"])
    assert answer["ok"] and "ORPO-tuned (LoRA) is the best" in answer["message"]
    assert "unacceptable: CPO-tuned (LoRA)" in answer["message"]


def test_compare_tab_builds_a_column_per_slot_and_shows_the_default_four(six, tmp_path):
    from workbench.app_service import WorkbenchService
    from workbench.ui import build_app, compare

    service = WorkbenchService(six, results_dir=tmp_path)
    demo = build_app(service)
    columns = {b.elem_id: b.visible for b in demo.blocks.values() if str(getattr(b, "elem_id", "")).startswith("col-")}
    assert columns == {"col-base": True, "col-full": True, "col-lora": True, "col-ppo": True, "col-orpo": False,
                       "col-cpo": False, "col-later": False}
    [picker] = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "compare-slots"]
    assert picker.value == ["base", "full", "lora", "ppo"] and len(picker.choices) == 7
    rendered = compare.render(service.compare(DIALOGUES[0][0], slots=["base", "cpo"]), service.slot_choices())
    assert len(rendered) == 1 + 3 * 7 and "CPO-tuned (LoRA)" in rendered[1 + 3 * 5]
    assert rendered[2 + 3 * 5] and rendered[2 + 3 * 1] == ""  # cpo has its summary; full was not compared


# ------------------------------------------------------------------------------------------------ the config


def load(tmp_path, text: str) -> ModelSetConfig:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return ModelSetConfig.load(path)


@pytest.mark.parametrize("text, message", [
    ("base: {ref: a}\ndecoder: {ref: b}\n", "unknown key(s) decoder; expected base, device, dtype"),
    ("base: {ref: a}\norpo: {ref: b, kind: lora}\n", "orpo.kind: expected one of base, full, adapter, got 'lora'"),
    ("base: {ref: a}\norpo: {ref: b, kind: adapter, rev: x}\n", "orpo: unknown key(s) rev; expected ref, revision"),
    ("base: {ref: a}\ndtype: fp64\n", "dtype: expected one of auto, int8, int8-dynamic, fp32, bf16, fp16, got 'fp64'"),
    ("base: {ref: a}\ndevice: gpu0\n", "device: expected auto, cpu, cuda or cuda:N, got 'gpu0'"),
    ("full: {ref: a}\n", "the base slot is required"),
    ("base: {ref: a}\nextra: {ref: b, kind: base}\n", "extra: kind: only the base slot is kind base"),
    ("base: {ref: a}\nOwn: {ref: b, kind: adapter}\n", "Own: a slot name is 1-24 lower-case letters"),
    ("base: {ref: a}\nlora: {ref: 3}\n", "lora: expected {ref: NAME, revision: REV}"),
])
def test_a_bad_models_config_is_one_line_naming_the_field(tmp_path, text, message):
    with pytest.raises(ModelSetError) as caught:
        load(tmp_path, text)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "models.yaml"))


def test_config_keeps_order_kinds_labels_and_validates_replacements(tmp_path):
    config = load(tmp_path, "orpo: {ref: o, kind: adapter, label: Mine}\nbase: b\nwide: {ref: w, kind: full}\n"
                            "lora: {ref: l, revision: 7}\n")
    assert list(config.slots) == ["base", "lora", "orpo", "wide"]  # the standard ones first, then the file's order
    assert config.slot_names == ["base", "full", "lora", "ppo", "orpo", "wide"]
    assert [config.kind(s) for s in config.slot_names] == ["base", "full", "adapter", "adapter", "adapter", "full"]
    assert (config.label("orpo"), config.label("wide"), config.slots["lora"].revision) == ("Mine", "wide", "7")
    assert dataclasses.replace(config, dtype="fp32").dtype == "fp32"
    with pytest.raises(ValueError):
        dataclasses.replace(config, dtype="fp64")  # a pydantic model: a replacement is validated too


def test_the_committed_configs_load_with_their_orpo_slot():
    for name in ("demo", "hub"):
        config = ModelSetConfig.load(paths.REPO_ROOT / "configs" / "models" / f"{name}.yaml")
        assert config.kind("orpo") == "adapter" and config.label("orpo") == "ORPO-tuned (LoRA)"
        assert config.slot_names == SIX[:4] + ["orpo"]


def test_a_trained_run_can_be_served_in_any_slot_of_its_kind():
    from workbench import jobs

    kinds = {"full": "full", "lora": "adapter", "ppo": "adapter", "orpo": "adapter", "wide": "full"}
    assert jobs.servable_slots("orpo", kinds) == ("orpo", "lora", "ppo")  # its own slot first
    assert jobs.servable_slots("full", kinds) == ("full", "wide")
    assert jobs.servable_slots("reward", kinds) == ()
    assert jobs.servable_slots("cpo") == ("lora", "ppo")  # without a config: the standard adapter slots
