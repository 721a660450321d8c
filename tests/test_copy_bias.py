"""Decoding's copy bias (generation.CopyBias, `trainers.evaluate --copy-bias`): what it adds to which logits, that
it steers generation to the prompt's own tokens, and that an answer stays the same alone and batched."""

from __future__ import annotations

import torch
from transformers import LogitsProcessorList

from tests.conftest import DIALOGUES
from workbench import modeling
from workbench.generation import CopyBias, GenerationSettings, generate

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
