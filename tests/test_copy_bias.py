"""Decoding's copy bias (generation.CopyBias, `trainers.evaluate --copy-bias`): what it adds to which logits, that
it steers generation to the prompt's own tokens, and that an answer stays the same alone and batched."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LogitsProcessorList

from tests.conftest import DIALOGUES, TINY_ARCH
from workbench import evaluation, generation, modeling
from workbench.generation import (CopyBias, GenerationSettings, copy_biased_logits, copy_boost, generate,
                                 model_copy_bias)

PROMPTS = [f"Summarize: {d}" for d, _ in DIALOGUES]


def test_prompt_tokens_get_the_bias_and_the_next_tokens_of_a_copied_span_three_times_it():
    prompt = torch.tensor([[5, 6, 7, 6, 8, 6, 7, 0, 0], [9, 4, 9, 3, 0, 0, 0, 0, 0]])
    written = torch.tensor([[0, 2, 6], [0, 4, 9]])  # the last tokens written: 6 in row 0, 9 in row 1
    out = CopyBias(prompt, pad_id=0, bias=2.0)(written, torch.zeros(2, 12))
    want = torch.zeros(2, 12)
    want[0, [5, 6]] = 2.0
    want[0, [7, 8]] = 6.0  # 6 is followed by 7 (twice) and by 8: once each, not per occurrence
    want[1, [3, 4]] = 6.0  # 9 is followed by 4 and by 3
    want[1, 9] = 2.0
    assert torch.equal(out, want)  # the padding (0) is never boosted, and rows only read their own prompt
    beams = CopyBias(prompt, pad_id=0, bias=2.0)(written.repeat_interleave(2, 0), torch.zeros(4, 12))
    assert torch.equal(beams, want.repeat_interleave(2, 0))  # the beams of a prompt are consecutive rows


def test_a_strong_bias_keeps_generation_to_the_prompts_tokens(tiny_model_dir, tiny_tokenizer):
    model = modeling.load_model(tiny_model_dir).eval()
    enc = tiny_tokenizer(PROMPTS, return_tensors="pt", padding=True)
    free = model.generate(**enc, max_new_tokens=10, do_sample=False)
    kept = model.generate(**enc, max_new_tokens=10, do_sample=False, logits_processor=LogitsProcessorList(
        [CopyBias(enc.input_ids, tiny_tokenizer.pad_token_id, 20.0)]))
    specials = {tiny_tokenizer.pad_token_id, tiny_tokenizer.eos_token_id}
    for row, source in zip(kept.tolist(), enc.input_ids.tolist()):
        assert set(row) - specials <= set(source)
    assert any(set(row) - specials - set(source) for row in free.tolist())  # random weights alone wander off


def test_with_a_copy_bias_answers_are_the_same_alone_and_batched_and_zero_changes_nothing(tiny_model_dir,
                                                                                            tiny_tokenizer):
    model = modeling.load_model(tiny_model_dir).eval()
    biased, plain = GenerationSettings(max_new_tokens=12, copy_bias=3.0), GenerationSettings(max_new_tokens=12)
    together = generate(model, tiny_tokenizer, PROMPTS, biased, batch_size=len(PROMPTS), pad_to_multiple_of=128)
    alone = [generate(model, tiny_tokenizer, [p], biased, batch_size=1, pad_to_multiple_of=128)[0] for p in PROMPTS]
    assert together == alone
    assert together != generate(model, tiny_tokenizer, PROMPTS, plain, batch_size=len(PROMPTS))
    beams = GenerationSettings(max_new_tokens=12, num_beams=3, copy_bias=3.0)
    assert all(generate(model, tiny_tokenizer, PROMPTS, beams, batch_size=len(PROMPTS)))


def test_evaluate_records_the_copy_bias_it_decoded_with(tiny_model_dir, tmp_store, tmp_path):
    from tests.conftest import publish_tiny_lora, rows
    from tests.test_ct2engine import write_rows
    from trainers import evaluate
    from workbench import paths, results

    publish_tiny_lora(tiny_model_dir, tmp_path)
    flags = ["--model", "test/tiny-lora", "--dataset", str(write_rows(tmp_path / "data", rows(8))), "--limit", "3",
             "--max-new-tokens", "6"]
    run = evaluate.main([*flags, "--copy-bias", "3"])
    assert results.read(paths.RESULTS_DIR / f"{run['run_id']}.json")["generation"]["copy_bias"] == 3.0
    assert evaluate.main(flags)["generation"]["copy_bias"] == 0.0


def test_an_adapter_decodes_with_its_bases_bias_and_a_reevaluation_records_it(tiny_model_dir, tmp_store, tmp_path):
    """Adapters carry no config: the base's copy bias is theirs. A run evaluated before its base gained one is
    re-evaluated with it, and its record says so."""
    from tests.conftest import publish_tiny_lora, rows
    from tests.test_ct2engine import write_rows
    from trainers import evaluate, reevaluate
    from workbench import paths, results
    from workbench.store import LocalStore

    publish_tiny_lora(tiny_model_dir, tmp_path)
    run = evaluate.main(["--model", "test/tiny-lora", "--dataset", str(write_rows(tmp_path / "data", rows(8))),
                         "--max-new-tokens", "6"])
    assert "model_copy_bias" not in run["generation"]
    model = modeling.load_model(tiny_model_dir)  # the same base weights, now with a bias in their config
    model.config.copy_bias = 2.0
    model.save_pretrained(tmp_path / "biased")
    modeling.load_tokenizer(tiny_model_dir).save_pretrained(tmp_path / "biased")
    LocalStore().publish(tmp_path / "biased", "test/tiny-base")
    again = reevaluate.main(["--runs", run["run_id"]])[0]
    assert again["generation"]["model_copy_bias"] == 2.0 and again["generation"]["copy_bias"] == 0.0
    assert results.read(paths.RESULTS_DIR / f"{run['run_id']}.json")["generation"]["model_copy_bias"] == 2.0
    assert evaluate.main(["--model", "test/tiny-lora", "--dataset", str(tmp_path / "data"), "--max-new-tokens",
                          "6"])["generation"]["model_copy_bias"] == 2.0


# ------------------------------------------------------------------------------------------------ trained with a bias


def test_the_training_boost_at_each_position_is_what_decoding_adds_at_that_step():
    torch.manual_seed(0)
    source = torch.randint(1, 9, (3, 10))
    source[1, 6:] = 0  # padding
    written = torch.randint(1, 9, (3, 5))
    bias = torch.tensor([2.0, 3.0, 0.5])  # one per row
    at_once = copy_boost(source, written, 12, bias, pad_id=0)
    for t in range(written.shape[1]):
        for row in range(3):
            step = CopyBias(source[row:row + 1], 0, float(bias[row]))(written[row:row + 1, :t + 1], torch.zeros(1, 12))
            assert torch.equal(at_once[row, t], step[0])


@pytest.mark.parametrize("span", [2, 4])
def test_a_pointer_over_several_tokens_trains_on_what_it_decodes_with_through_a_retelling_table(span):
    table = {**TABLE, "possessive": [26, 7]}
    torch.manual_seed(1)
    source = torch.randint(1, 12, (2, 24))
    source[:, [0, 9]], source[:, [1, 10]] = torch.tensor([[50, 51], [51, 50]]), 4  # two turns
    source[1, 18:] = 0
    written = torch.cat([source[:, 2:8], torch.tensor([[51, 26, 7], [50, 26, 7]]), source[:, 11:15]], 1)
    at_once = copy_boost(generation.retell_source(source, table), generation.retell_keys(written, table), 60, 1.5, 0,
                         span)
    for t in range(written.shape[1]):
        step = CopyBias(source, 0, 1.5, table, span)(written[:, :t + 1], torch.zeros(2, 60))
        assert torch.equal(at_once[:, t], step)


def test_a_pointer_over_several_tokens_follows_only_the_place_that_matches_the_most_of_them():
    source = torch.tensor([[5, 6, 7, 9, 5, 6, 8, 3, 6, 2, 0]])  # "6" three times, "5 6" twice, "9 5 6" once
    written = torch.tensor([[0, 9, 5, 6]])
    one, three = (copy_boost(source, written, 12, 1.0, 0, span)[0, -1] for span in (1, 3))
    assert one[[7, 8, 2]].tolist() == [3, 3, 3]  # after "6": everything that follows a "6"
    assert three[8] == 3 and three[[7, 2]].tolist() == [1, 1]  # after "9 5 6": only "8"
    assert generation.match_lengths(source, written, 0, 3)[0, -1].tolist() == [0, 2, 0, 0, 0, 3, 0, 0, 1, 0, 0]
    lost = torch.tensor([[0, 4, 4, 6]])  # nothing before the "6" matches: every "6" again, as with span 1
    assert torch.equal(copy_boost(source, lost, 12, 1.0, 0, 3)[0, -1], copy_boost(source, lost, 12, 1.0, 0, 1)[0, -1])


def test_a_full_fine_tune_with_a_copy_bias_trains_on_its_biased_logits(tiny_model_dir, tiny_tokenizer, tmp_store,
                                                                        tmp_path, monkeypatch):
    from tests.conftest import publish_tiny_lora, rows, write_rows
    from trainers import common, full, sft
    from workbench import store

    publish_tiny_lora(tiny_model_dir, tmp_path)
    monkeypatch.setattr(common, "RUNS_DIR", tmp_path / "runs")
    seen = []
    original = sft.copy_biased_trainer().compute_loss

    def checked(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        batch, rng = {k: v.clone() for k, v in inputs.items()}, torch.random.get_rng_state()
        loss = original(self, model, inputs, return_outputs, num_items_in_batch)
        torch.random.set_rng_state(rng)  # the same dropout masks
        with torch.no_grad():  # the loss is the cross-entropy of the biased logits, not of the plain ones
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            # the loss boosts every piece; decoding alone leaves the pieces inside a word (copy_inner) alone
            biased = copy_biased_logits(logits, batch["input_ids"], batch["decoder_input_ids"], 2.0,
                                        tiny_tokenizer.pad_token_id)
            starts = copy_biased_logits(logits, batch["input_ids"], batch["decoder_input_ids"], 2.0,
                                        tiny_tokenizer.pad_token_id, inner=generation.model_copy_inner(model))
            labels = batch["labels"].flatten()
            want = torch.nn.functional.cross_entropy(biased.flatten(0, 1), labels, ignore_index=-100)
            plain = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels, ignore_index=-100)
            assert not torch.equal(starts, biased)  # the two differ on these batches, so the check below can fail
        seen.append((loss.item(), want.item(), plain.item()))
        return loss

    monkeypatch.setattr(sft.copy_biased_trainer(), "compute_loss", checked)
    run = full.main(["--model", "test/tiny-base", "--dataset", str(write_rows(tmp_path / "data", rows(8))),
                     "--max-steps", "2", "--batch-size", "4", "--precision", "fp32", "--max-new-tokens", "6",
                     "--eval-limit", "3", "--copy-bias", "2", "--output", "test/biased-full"])
    assert seen and all(abs(loss - want) < 1e-4 and abs(loss - plain) > 1e-3 for loss, want, plain in seen)
    folder = store.resolve("test/biased-full")
    model = modeling.load_model(folder).eval()
    assert model_copy_bias(model) == 2.0 and run["training"]["copy_bias"] == 2.0
    assert run["generation"]["model_copy_bias"] == 2.0 and run["generation"]["copy_bias"] == 0.0
    # decoding adds the model's bias by itself: the same as the same weights without it, decoded with bias 2
    settings = GenerationSettings(max_new_tokens=12)
    own = generate(model, tiny_tokenizer, PROMPTS, settings)
    model.config.copy_bias = 0.0
    assert own == generate(model, tiny_tokenizer, PROMPTS, GenerationSettings(max_new_tokens=12, copy_bias=2.0))
    assert own != generate(model, tiny_tokenizer, PROMPTS, settings)


def test_ppo_scores_the_tokens_of_a_biased_model_with_its_bias(tiny_model_dir, tiny_tokenizer):
    from workbench import ppo

    model = modeling.load_model(tiny_model_dir).eval()
    enc = tiny_tokenizer(PROMPTS[:2], return_tensors="pt", padding=True)
    response = torch.randint(3, 40, (2, 5))
    mask = torch.ones_like(response)
    plain, _ = ppo.seq2seq_logprobs(model, enc.input_ids, enc.attention_mask, response, mask)
    model.config.copy_bias = 2.5
    biased, _ = ppo.seq2seq_logprobs(model, enc.input_ids, enc.attention_mask, response, mask)
    decoder_input_ids = torch.cat([torch.zeros_like(response[:, :1]), response[:, :-1]], dim=1)
    with torch.no_grad():
        logits = model(**enc, decoder_input_ids=decoder_input_ids).logits
    want = torch.log_softmax(copy_biased_logits(logits, enc.input_ids, decoder_input_ids, 2.5, 0), -1)
    assert torch.allclose(biased, want.gather(-1, response[..., None])[..., 0], atol=1e-5)
    assert not torch.allclose(biased, plain)


def test_ctranslate2_cannot_apply_a_models_bias_and_refuses_it(tiny_model_dir, tmp_path):
    from workbench import ct2engine

    model = modeling.load_model(tiny_model_dir)
    model.config.copy_bias = 3.0
    model.save_pretrained(tmp_path / "biased")
    with pytest.raises(ct2engine.EngineError, match="copy bias"):
        ct2engine._merged(tmp_path / "biased", None, None)


def test_within_training_with_copy_bias_teacher_forced_calls_read_the_biased_logits(tiny_model_dir, tiny_tokenizer):
    """How trl's preference losses get the bias: a teacher-forced call (input ids positional, as trl passes them)
    returns copy_biased_logits; generation is left alone, and the hook is gone after the block."""
    from workbench.generation import training_with_copy_bias

    model = modeling.load_model(tiny_model_dir).eval()
    model.config.copy_bias = 2.0
    enc = tiny_tokenizer(PROMPTS[:2], return_tensors="pt", padding=True)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(
        labels=tiny_tokenizer(["Tom asks Ann", "Ann asks"], return_tensors="pt", padding=True).input_ids)
    settings = GenerationSettings(max_new_tokens=6)
    with torch.no_grad():
        plain = model(enc.input_ids, attention_mask=enc.attention_mask, decoder_input_ids=decoder_input_ids).logits
        before = generate(model, tiny_tokenizer, PROMPTS[:2], settings)
        with training_with_copy_bias(model, tiny_tokenizer.pad_token_id):
            biased = model(enc.input_ids, attention_mask=enc.attention_mask,
                           decoder_input_ids=decoder_input_ids).logits
            during = generate(model, tiny_tokenizer, PROMPTS[:2], settings)
        after = model(enc.input_ids, attention_mask=enc.attention_mask, decoder_input_ids=decoder_input_ids).logits
    assert torch.allclose(biased, copy_biased_logits(plain, enc.input_ids, decoder_input_ids, 2.0, 0), atol=1e-5)
    assert not torch.allclose(biased, plain) and torch.equal(after, plain)
    assert during == before  # decoding adds the bias once, through its logits processor


def test_orpo_on_a_biased_base_trains_on_the_biased_logits(tiny_model_dir, tmp_path, monkeypatch):
    """A LoRA start on a base that carries a copy bias: trl's ORPO loss is computed on the logits the adapter will
    decode with, so the first step's loss differs from the same run on the same weights without the bias."""
    from tests.conftest import publish_tiny_lora, rows, write_rows
    from trainers import preference
    from workbench import paths, preferences, results

    losses = {}
    for bias in (0.0, 3.0):
        folder = tmp_path / f"bias-{bias:g}"
        monkeypatch.setattr(paths, "STORE_DIR", folder / "store")
        monkeypatch.setattr(paths, "RESULTS_DIR", folder / "results")
        model = modeling.load_model(tiny_model_dir)
        model.config.copy_bias = bias
        model.save_pretrained(folder / "base")
        modeling.load_tokenizer(tiny_model_dir).save_pretrained(folder / "base")
        publish_tiny_lora(folder / "base", folder)
        for row in rows(4):
            outputs = {"a": ("m/ref", "r1", row["summary"]), "b": ("m/rude", "r2", "You idiot, " + row["summary"])}
            preferences.record_vote("test/prefs", dialogue=row["dialogue"], prompt=f"Summarize: {row['dialogue']}",
                                    outputs=outputs, best="a", voter="test")
        data = write_rows(folder / "data", rows(4))
        metrics = preference.main(["--policy", "test/tiny-lora", "--preferences", "test/prefs", "--dataset",
                                   str(data), "--max-steps", "1", "--batch-size", "2", "--max-new-tokens", "6",
                                   "--eval-batch-size", "4", "--precision", "fp32", "--held-out", "0",
                                   "--logging-steps", "1", "--seed", "0", "--checkpoint-dir", str(folder / "runs"),
                                   "--output", "test/tiny-orpo"])
        saved = results.read(folder / "results" / f"{metrics['run_id']}.json")
        log = (folder / "results" / saved["training"]["log_file"]).read_text().splitlines()
        losses[bias] = json.loads(log[0])["loss"]
        assert saved["generation"].get("model_copy_bias", 0.0) == bias  # evaluated as it will be served
    assert losses[0.0] != pytest.approx(losses[3.0], rel=1e-4)


# The retelling pointer, on ids of a made-up vocabulary: tags 50 and 51, ":" 4, "I" 12, "my" 23, "you" 11, "am" 66,
# "is" 67
TABLE = {"tags": [50, 51], "colon": 4, "possessive": 27, "speaker": [12, 23], "listener": [11], "replace": [[66, 67]]}


def test_the_retold_dialogue_has_each_speakers_tag_where_they_say_i_or_you():
    source = torch.tensor([[50, 4, 11, 30, 12, 66, 51, 4, 11, 23, 32, 0],  # "#P1#: you x I am  #P2#: you my y"
                           [11, 12, 66, 50, 3, 0, 0, 0, 0, 0, 0, 0]])     # no "#PersonN#:" yet: no speaker to name
    want = torch.tensor([[50, 4, 51, 30, 50, 67, 51, 4, 50, 51, 32, 0],
                         [11, 12, 67, 50, 3, 0, 0, 0, 0, 0, 0, 0]])
    assert torch.equal(generation.retell_source(source, TABLE), want)
    assert torch.equal(generation.retell_source(source, None), source)  # a model without a table copies as it reads


def test_the_pointer_reads_a_possessive_after_a_tag_as_the_tag():
    written = torch.tensor([[0, 50, 27, 9], [0, 9, 27, 50]])  # "#P1# 's x" and "x 's #P1#"
    assert generation.retell_keys(written, TABLE).tolist() == [[0, 50, 50, 9], [0, 9, 27, 50]]


def test_the_pointer_reads_the_last_piece_of_a_two_piece_possessive_as_the_tag():
    table = {**TABLE, "possessive": [26, 7]}  # "'" and "s", as the demo family's tokenizer writes a tag's "'s"
    written = torch.tensor([[0, 51, 26, 7, 9], [0, 9, 26, 7, 50], [0, 50, 7, 26, 7]])
    assert generation.retell_keys(written, table).tolist() == [[0, 51, 26, 51, 9], [0, 9, 26, 7, 50],
                                                                [0, 50, 7, 26, 7]]  # not after a tag: as written
    prompt = torch.tensor([[51, 4, 8, 23, 30, 5]])  # "#P2#: do my bike ." retold "#P2#: do #P2# bike ."
    after = CopyBias(prompt, pad_id=0, bias=1.0, retell=table)(torch.tensor([[0, 8, 51, 26, 7]]), torch.zeros(1, 60))
    assert after[0, 30] == 3 and after[0, 26] == 0  # "#Person2#'s" written: next, "bike"


def test_a_retelling_copy_bias_points_at_the_listeners_tag_and_the_word_after_it():
    prompt = torch.tensor([[50, 4, 8, 11, 30, 5]])  # "#P1#: do you believe ."
    plain = CopyBias(prompt, pad_id=0, bias=1.0)(torch.tensor([[0, 8]]), torch.zeros(1, 60))
    retold = CopyBias(prompt, pad_id=0, bias=1.0, retell=TABLE)(torch.tensor([[0, 8]]), torch.zeros(1, 60))
    assert plain[0, 11] == 3 and plain[0, 51] == 0  # after "do": "you", as the dialogue says it
    assert retold[0, 51] == 3 and retold[0, 11] == 0  # the summary's "#Person2#" instead
    after_tag = CopyBias(prompt, pad_id=0, bias=1.0, retell=TABLE)(torch.tensor([[0, 8, 51]]), torch.zeros(1, 60))
    assert after_tag[0, 30] == 3  # and then "believe", which follows "you" in the dialogue


def test_the_committed_family_reads_the_dialogue_retold_through_its_tokenizers_table():
    """The committed tokenizer writes a tag's "'s" in two pieces ("'", "s"); the base and the full model keep the
    table `retell_table` makes of it, with a pointer over the last 4 tokens written, and the dialogue retold through
    it reads as the restate rule writes it. The summarizers carry a minimum summary length of 20 tokens (the full model
    in its generation_config, each adapter in its own folder); the prompted base none."""
    from workbench import paths, store

    local = store.LocalStore(paths.REPO_ROOT / "store")
    base, full = (local.resolve(f"demo/flan-t5-demo-{name}") for name in ("base", "full"))
    tokenizer = modeling.load_tokenizer(base)
    assert tokenizer.tokenize("#Person1#'s") == ["▁#Person1#", "'", "s"]
    table = generation.retell_table(tokenizer)
    assert table["possessive"] == tokenizer.convert_tokens_to_ids(["'", "s"])
    for path, floor in ((base, 0), (full, 20)):
        model = modeling.load_model(path)
        assert generation.model_copy_retell(model) == table and generation.model_copy_span(model) == 4
        assert generation.model_min_new_tokens(model) == floor
    for name in ("lora", "ppo", "orpo"):  # PPO and ORPO keep the minimum of the LoRA they started from
        assert modeling.read_adapter_min_new_tokens(local.resolve(f"demo/flan-t5-demo-{name}")) == 20
    ids = tokenizer("#Person2#: Do you think I am right about my bike?", return_tensors="pt").input_ids
    retold = tokenizer.convert_ids_to_tokens(generation.retell_source(ids, table)[0])
    assert retold[:12] == ["▁#Person2#", ":", "▁Do", "▁#Person1#", "▁think", "▁#Person2#", "▁is", "▁right",
                           "▁about", "▁#Person2#", "▁bike", "?"]
    summary = tokenizer("#Person2#'s bike", add_special_tokens=False, return_tensors="pt").input_ids
    assert tokenizer.convert_ids_to_tokens(generation.retell_keys(summary, table)[0]) == [
        "▁#Person2#", "'", "▁#Person2#", "▁bike"]  # the pointer then follows "#Person2#" to "bike"


def test_a_full_fine_tune_with_a_copy_bias_keeps_its_tokenizers_retelling_table(tiny_model_dir, tmp_store, tmp_path,
                                                                                monkeypatch):
    from tests.conftest import publish_tiny_lora, rows, write_rows
    from trainers import common, full
    from workbench import store

    publish_tiny_lora(tiny_model_dir, tmp_path)
    monkeypatch.setattr(common, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(generation, "retell_table", lambda tokenizer: TABLE)  # the tiny tokenizer has none
    full.main(["--model", "test/tiny-base", "--dataset", str(write_rows(tmp_path / "data", rows(8))),
               "--max-steps", "1", "--batch-size", "4", "--precision", "fp32", "--max-new-tokens", "4",
               "--eval-limit", "2", "--copy-bias", "2", "--copy-span", "3", "--output", "test/retold-full"])
    saved = modeling.load_model(store.resolve("test/retold-full"))
    assert model_copy_bias(saved) == 2.0 and generation.model_copy_retell(saved) == TABLE
    assert generation.model_copy_span(saved) == 3
    processors = generation.copy_bias_processors(saved, torch.tensor([[50, 4, 11]]), 0)["logits_processor"]
    assert processors[0].retell == TABLE and processors[0].span == 3  # and decoding reads the dialogue through it


def test_pieces_inside_a_word_get_no_bias_of_their_own_but_the_pointer_still_finishes_a_copied_word():
    # source "▁per suade ▁her": 5 = "▁per", 6 = "suade" (inside a word), 7 = "▁her"
    prompt = torch.tensor([[5, 6, 7, 0]])
    elsewhere, copying = torch.tensor([[0, 9]]), torch.tensor([[0, 5]])  # "▁divorce" written, or "▁per"
    everywhere = copy_boost(prompt, elsewhere, 12, 2.0, 0, last=True)[0, 0]
    starts = copy_boost(prompt, elsewhere, 12, 2.0, 0, last=True, inner=[6])[0, 0]
    assert everywhere[6] == 2.0 and starts[6] == 0  # no push to glue "suade" onto "divorce"
    assert starts[5] == starts[7] == 2.0  # word starts keep theirs
    assert copy_boost(prompt, copying, 12, 2.0, 0, last=True, inner=[6])[0, 0, 6] == 4.0  # after "▁per": the pointer
    decoding = CopyBias(prompt, 0, 2.0, inner=[6])
    assert torch.equal(decoding(elsewhere, torch.zeros(1, 12))[0], starts)
    assert torch.equal(decoding(copying, torch.zeros(1, 12))[0, 6], torch.tensor(4.0))  # its mask, kept, is the same
    ppo = copy_biased_logits(torch.zeros(1, 2, 12), prompt, elsewhere, 2.0, 0, inner=[6])
    assert torch.equal(ppo[0, -1], starts)  # PPO's log-probabilities add what decoding adds


def test_inner_pieces_are_the_letter_pieces_without_a_word_start_and_none_for_other_vocabularies(tiny_tokenizer):
    inner = generation.inner_pieces(tiny_tokenizer)
    pieces = tiny_tokenizer.convert_ids_to_tokens(inner)
    assert inner and all(p[:1].isalpha() for p in pieces)
    starts = [p for p in tiny_tokenizer.convert_ids_to_tokens(list(range(len(tiny_tokenizer)))) if p.startswith("▁")]
    assert starts and not set(starts) & set(pieces)
    assert not {".", ",", "?", ":", "1", "2"} & set(pieces)  # punctuation and digits ("#Person2#") stay boosted

    class WordPiece:  # a vocabulary that marks the inside of a word instead ("##ing"): every piece is boosted
        def __len__(self):
            return 3

        def convert_ids_to_tokens(self, ids):
            return ["[PAD]", "run", "##ing"][: len(ids)]

    assert generation.inner_pieces(WordPiece()) is None


def test_a_model_saved_before_copy_inner_gets_it_from_its_tokenizer_when_loaded(tiny_model_dir, tiny_tokenizer,
                                                                                  tmp_path):
    model = modeling.load_model(tiny_model_dir)
    generation.set_copy_bias(model, 3.0, tiny_tokenizer)
    assert generation.model_copy_inner(model) == generation.inner_pieces(tiny_tokenizer)
    model.config.copy_inner = None  # as the demo family of 2026-12-06 was saved
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()).get("copy_inner") is None
    loaded = modeling.load_model(tmp_path)
    assert generation.model_copy_inner(loaded) == generation.inner_pieces(tiny_tokenizer)
    assert evaluation.carried_decoding(loaded) == {"model_copy_bias": 3.0, "model_copy_word_starts": True}
    assert generation.model_copy_inner(modeling.load_model(tiny_model_dir)) is None  # no bias, nothing to fill
