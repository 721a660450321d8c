"""CTranslate2 as an optional engine (workbench/ct2engine.py): the converted copy of an untied-head T5 computes the
same log-probabilities and greedy summaries as PyTorch fp32, an adapter merged into a converted copy answers as peft
serving it, converted copies are cached by revision hash, the models config's `engine` validates, the micro-batcher
serves it, and `python -m trainers.evaluate --engine ctranslate2` writes a valid run.

Tiny random models in temporary stores (tests/ui_fixtures); the conversion cache goes to a temporary folder.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from tests import ui_fixtures as uf
from tests.conftest import DIALOGUES, rows, write_rows
from workbench import modeling, paths, prompts, results, store
from workbench.generation import GenerationSettings, generate
from workbench.modelset import SLOTS, ModelSet, ModelSetConfig, ModelSetError

ctranslate2 = pytest.importorskip("ctranslate2")
from workbench import ct2engine  # noqa: E402

PROMPTS = [prompts.zero_shot(d) for d, _ in DIALOGUES] + [prompts.zero_shot(d) for d in uf.DIALOGUES_EXTRA]
GREEDY = GenerationSettings(max_new_tokens=12)
# Merged adapters (CTranslate2) and unmerged ones (peft) round differently in the last bits. The tiny random models'
# logits are nearly flat, and the n-gram ban moves the choice to the runner-up, often a near-tie, so a comparison
# across the merge is made under plain greedy (1 of 24 PPO summaries differed in CI with the ban).
PLAIN_GREEDY = GenerationSettings(max_new_tokens=12, no_repeat_ngram_size=0)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Every test converts into one temporary cache (shared across the module so conversions are reused)."""
    monkeypatch.setenv(ct2engine.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "ct2-cache"))


@pytest.fixture(scope="module")
def family(tmp_path_factory, tiny_tokenizer, tiny_model_dir):
    """The tiny family (base, full, lora, ppo) in a store of its own, and its models config (fp32)."""
    root = tmp_path_factory.mktemp("ct2-family")
    patch = pytest.MonkeyPatch()
    patch.setattr(paths, "STORE_DIR", uf.build_family(root, tiny_tokenizer, tiny_model_dir))
    patch.setattr(paths, "RESULTS_DIR", root / "results")
    yield ModelSetConfig.load(uf.write_config(root / "models.yaml")), root
    patch.undo()


def converted_model(folder, tokenizer, compute_type="float32"):
    return ct2engine.Ct2Model(ct2engine.converted(folder), tokenizer, compute_type=compute_type, threads=1)


def test_the_converted_copy_keeps_the_untied_head_and_computes_torch_logprobs(tiny_model_dir, tiny_tokenizer):
    """The converter must convert lm_head as its own matrix and must not scale the decoder output (transformers 5
    always reports tie_word_embeddings=True; unfixed, every log-probability was off by far more than rounding)."""
    model = modeling.load_model(tiny_model_dir, dtype="fp32", device="cpu")
    assert not torch.equal(model.lm_head.weight, model.shared.weight)  # the head really is untied
    assert model.config.scale_decoder_outputs is False
    translator = converted_model(tiny_model_dir, tiny_tokenizer).translator
    for (dialogue, summary) in DIALOGUES:
        enc = tiny_tokenizer(prompts.zero_shot(dialogue), return_tensors="pt")
        labels = tiny_tokenizer(summary, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(**enc, labels=labels).logits[0]
        want = torch.log_softmax(logits, -1).gather(1, labels[0][:, None])[:, 0].numpy()
        source = tiny_tokenizer.convert_ids_to_tokens(enc.input_ids[0])
        target = tiny_tokenizer.convert_ids_to_tokens(labels[0][:-1])  # CTranslate2 adds the end token itself
        got = np.array(translator.score_batch([source], [target])[0].log_probs)
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("settings", [GREEDY, GenerationSettings(max_new_tokens=5),
                                      GenerationSettings(max_new_tokens=12, min_new_tokens=10),
                                      GenerationSettings(max_new_tokens=12, no_repeat_ngram_size=2),
                                      GenerationSettings(max_new_tokens=12, repetition_penalty=1.5),
                                      GenerationSettings(max_new_tokens=12, num_beams=3, no_repeat_ngram_size=0)],
                         ids=["greedy", "short", "min-length", "no-repeat", "repetition", "beams"])
def test_float32_outputs_equal_torch_fp32(tiny_model_dir, tiny_tokenizer, settings):
    """Same token limits, penalties and beam search: every summary equals transformers' fp32 one, and it is the same
    alone and in one batch."""
    model = modeling.load_model(tiny_model_dir, dtype="fp32", device="cpu")
    want = generate(model, tiny_tokenizer, PROMPTS, settings, batch_size=len(PROMPTS))
    engine = converted_model(tiny_model_dir, tiny_tokenizer)
    assert engine.generate(PROMPTS, settings, batch_size=len(PROMPTS)) == want
    assert [engine.generate([p], settings)[0] for p in PROMPTS] == want
    assert len(set(want)) > 1 and all(want)  # the prompts lead to different, non-empty summaries


def test_what_the_engine_cannot_do_is_refused_in_one_line(monkeypatch):
    with pytest.raises(ct2engine.EngineError, match="sampling with beam search") as err:
        ct2engine.decoding_options(GenerationSettings(do_sample=True, num_beams=2))
    with pytest.raises(ct2engine.EngineError, match="copy_bias"):
        ct2engine.decoding_options(GenerationSettings(copy_bias=3.0))
    assert "\n" not in str(err.value)
    with pytest.raises(ct2engine.EngineError, match="dtype fp16 on cpu is not supported"):
        ct2engine.compute_type("fp16", "cpu")
    assert ct2engine.compute_type("auto", "cpu") == "int8" and ct2engine.compute_type("fp32", "cpu") == "float32"
    monkeypatch.setitem(__import__("sys").modules, "ctranslate2", None)  # as if not installed
    with pytest.raises(ct2engine.EngineError, match="pip install ctranslate2"):
        ct2engine.require()


def test_the_models_config_engine_field_validates(family):
    config, root = family
    assert config.engine == "torch"
    with pytest.raises(ModelSetError, match=r"^engine: expected one of torch, ctranslate2, got 'onnx'$"):
        ModelSetConfig.from_mapping({"base": "test/tiny-base", "engine": "onnx"})
    assert ModelSetConfig.from_mapping({"base": "test/tiny-base", "engine": "ctranslate2"}).engine == "ctranslate2"
    with pytest.raises(ModelSetError, match="fp16 on cpu is not supported"):
        ModelSet(dataclasses.replace(config, engine="ctranslate2", dtype="fp16"), device="cpu")


def test_every_slot_served_by_its_converted_copy_answers_as_torch_and_peft(family):
    """base, full and the LoRA/PPO adapters merged into converted copies: the same summaries as the torch + peft
    model set (fp32), one engine per slot."""
    config, _ = family
    torch_set = ModelSet(config, device="cpu", max_batch=1)
    ct2_set = ModelSet(dataclasses.replace(config, engine="ctranslate2"), device="cpu", max_batch=1)
    assert ct2_set.available == list(SLOTS) and ct2_set.compute_type == "float32"
    assert ct2_set.call_groups(SLOTS) == [["base"], ["lora"], ["ppo"], ["full"]]
    want = torch_set.generate_slots(SLOTS, PROMPTS, PLAIN_GREEDY)
    got = ct2_set.generate_slots(SLOTS, PROMPTS, PLAIN_GREEDY)
    assert got == want
    assert want["lora"] != want["base"] and want["ppo"] != want["lora"]  # the adapters change the outputs
    # the header names the engine that serves, not the torch precision it would have used
    from workbench.app_service import WorkbenchService

    header = WorkbenchService(ct2_set).status_summary()
    assert header["dtype"] == "CTranslate2 float32" and header["precision_note"].startswith("CTranslate2 float32")
    assert WorkbenchService(torch_set).status_summary()["dtype"] == str(torch_set.precision)


def test_converted_copies_are_cached_by_revision_hash(family, tmp_path, monkeypatch, tiny_model_dir):
    """A second model set and a reload convert nothing; a new revision of one adapter converts that slot only."""
    config, root = family
    config = dataclasses.replace(config, engine="ctranslate2")
    ModelSet(config, device="cpu")  # make sure every slot is in the cache
    calls: list = []
    real = ct2engine._convert
    monkeypatch.setattr(ct2engine, "_convert", lambda *a: (calls.append(a), real(*a)))
    ms = ModelSet(config, device="cpu")
    ms.reload()
    assert calls == []
    before = {s: ms.engine_of(s).model for s in SLOTS}
    # the LoRA slot gets a new revision: the ppo adapter's files published as test/tiny-lora
    store.LocalStore().publish(store.resolve(uf.REPOS["ppo"]), uf.REPOS["lora"])
    try:
        ms.reload()
        assert len(calls) == 0  # that exact merged copy (base + the ppo adapter's files) is already cached
        assert ms.engine_of("lora").model is before["ppo"]  # and already in memory: reused, not reloaded
        assert all(ms.engine_of(s).model is before[s] for s in ("base", "full", "ppo"))
        changed = tmp_path / "changed"
        lora = modeling.load_model(store.resolve(uf.REPOS["full"]), dtype="fp32")
        with torch.no_grad():
            lora.lm_head.weight.mul_(1.5)
        lora.save_pretrained(changed)
        modeling.load_tokenizer(tiny_model_dir).save_pretrained(changed)
        store.LocalStore().publish(changed, uf.REPOS["full"])
        ms.reload()
        assert len(calls) == 1 and ms.engine_of("full").model is not before["full"]
        assert all(ms.engine_of(s).model is before[s] for s in ("base", "ppo"))
    finally:
        for slot in ("lora", "full"):
            revisions = store.LocalStore().revisions(uf.REPOS[slot])
            store.LocalStore().repo_dir(uf.REPOS[slot]).joinpath("refs", "main").write_text(revisions[0] + "\n")


def test_concurrent_requests_are_micro_batched_and_answer_as_alone(family):
    config, _ = family
    ms = ModelSet(dataclasses.replace(config, engine="ctranslate2", dtype="auto"), device="cpu", max_batch=32,
                  batch_window_ms=300)
    assert ms.batch_invariant and ms.compute_type == "int8"
    alone = [{s: r.text for s, r in ms.summarize(dict.fromkeys(SLOTS, p), GREEDY).items()} for p in PROMPTS]
    out: list = [None] * len(PROMPTS)
    barrier = threading.Barrier(len(PROMPTS))

    def one(i):
        barrier.wait()
        out[i] = {s: r.text for s, r in ms.summarize(dict.fromkeys(SLOTS, PROMPTS[i]), GREEDY).items()}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert out == alone and max(ms.batcher.batches) > 1


def test_evaluate_with_the_ctranslate2_engine_writes_a_valid_run(tiny_model_dir, tmp_store, tmp_path, capsys):
    from tests.conftest import publish_tiny_lora
    from trainers import common, evaluate

    publish_tiny_lora(tiny_model_dir, tmp_path)
    data = write_rows(tmp_path / "data", rows(8))
    flags = ["--model", "test/tiny-lora", "--dataset", str(data), "--limit", "3", "--max-new-tokens", "6"]
    run = evaluate.main([*flags, "--engine", "ctranslate2"])
    torch_run = evaluate.main(flags)
    assert results.read(paths.RESULTS_DIR / f"{run['run_id']}.json") == run
    assert run["generation"]["engine"] == "ctranslate2" and run["generation"]["dtype"] == "float32"
    assert torch_run["generation"].get("engine") is None and run["params"] == torch_run["params"]
    assert run["metrics"]["rouge1"] == torch_run["metrics"]["rouge1"]  # fp32 greedy: the same summaries
    assert run["base_model"] == "test/tiny-base" and run["dataset"]["n"] == 3
    capsys.readouterr()
    assert common.cli(evaluate.main, [*flags, "--engine", "ctranslate2", "--dtype", "fp16"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: engine / dtype:") and "fp16 on cpu is not supported" in error
    assert "\n" not in error
