import json
from pathlib import Path

import torch

from tests.conftest import DIALOGUES, TINY_ARCH
from workbench import generation, modeling


def test_tokenizer_round_trip_keeps_ids_and_t5_layout(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1
    assert tok.convert_tokens_to_ids("<extra_id_99>") == len(tok) - 100
    text = DIALOGUES[0][0]
    ids = tok(text).input_ids
    assert ids[-1] == tok.eos_token_id
    tok.save_pretrained(tmp_path)
    again = modeling.load_tokenizer(tmp_path)
    assert again(text).input_ids == ids
    # newlines become spaces as in FLAN-T5's tokenizer; the words survive
    assert again.decode(ids, skip_special_tokens=True) == text.replace("\n", " ")
    assert "#Person1#" in again.decode(ids, skip_special_tokens=True)


def test_demo_architecture_is_flan_t5_shaped(tiny_tokenizer):
    config = modeling.demo_config(len(tiny_tokenizer), **TINY_ARCH)
    model = modeling.build_model(config)
    assert config.is_gated_act and config.feed_forward_proj == "gated-gelu"
    assert config.scale_decoder_outputs is False  # T5 v1.1 / FLAN-T5 do not rescale decoder outputs
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()  # untied head, as FLAN-T5
    batch = tiny_tokenizer(["#Person1#: hi"], return_tensors="pt")
    out = model(**batch, labels=batch.input_ids)
    assert 3 < out.loss.item() < 10  # small-scale head: starts near log(vocab), not ~30


def test_load_model_reads_safetensors_only(tiny_model_dir, tmp_path):
    model = modeling.load_model(tiny_model_dir, dtype="fp32")
    assert not model.training
    assert (tiny_model_dir / "model.safetensors").exists()
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    import shutil

    bad = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "model.safetensors").unlink()
    torch.save(model.state_dict(), bad / "pytorch_model.bin")
    try:
        modeling.load_model(bad)
    except (OSError, ValueError) as err:
        assert "safetensors" in str(err).lower() or "model.safetensors" in str(err)
    else:
        raise AssertionError("a pickle checkpoint must not load")


def test_generate_batched_equals_one_by_one_in_order(tiny_model_dir, tiny_tokenizer):
    model = modeling.load_model(tiny_model_dir, dtype="fp32")
    prompts = [d for d, _ in DIALOGUES] + ["#Person1#: short"]
    settings = generation.GenerationSettings(max_new_tokens=8)
    batched = generation.generate(model, tiny_tokenizer, prompts, settings, batch_size=3)
    alone = [generation.generate(model, tiny_tokenizer, [p], settings)[0] for p in prompts]
    assert batched == alone
    assert all(isinstance(t, str) for t in batched)


def test_generation_settings_validate():
    import pytest

    with pytest.raises(ValueError, match="num_beams=0"):
        generation.GenerationSettings(num_beams=0)
    assert generation.GenerationSettings(do_sample=True, top_p=0.9).to_kwargs()["top_p"] == 0.9
    assert "top_p" not in generation.GenerationSettings().to_kwargs()


def test_best_dtype_is_supported_here():
    assert modeling.best_dtype("cpu") in (torch.float32, torch.bfloat16)
    assert modeling.resolve_dtype("fp32") is torch.float32


def test_canonical_pieces_do_not_depend_on_the_trainers_order():
    import random

    specials = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
    learned = [["▁the", -2.5], ["▁$38.", -9.25 + 1e-15], ["▁$41.", -9.25], ["▁$19.", -9.25 - 1e-15], ["e", -4.0]]
    lowest = -12.0
    chars = ["~", "Q", "(", "J"]  # kept characters: lowest + 0, 1e-4, ... in whatever order the trainer met them
    runs = []
    for seed in range(5):
        rng = random.Random(seed)
        order = rng.sample(chars, len(chars))
        appended = [[c, lowest + i * 1e-4] for i, c in enumerate(order)] + [["rt", lowest]]
        body = rng.sample(learned, len(learned)) + appended
        runs.append(modeling.canonical_pieces(specials + sorted(body, key=lambda item: -item[1])))
    assert all(run == runs[0] for run in runs)
    out = runs[0]
    assert [p for p, _ in out[:3]] == ["<pad>", "</s>", "<unk>"]
    assert [p for p, _ in out[3:]] == ["▁the", "e", "▁$19.", "▁$38.", "▁$41.", "(", "J", "Q", "rt", "~"]
    assert dict(out)["("] == round(lowest + 3e-4, 9) and dict(out)["~"] == lowest  # the grid's scores, kept


def test_train_tokenizer_gives_the_same_ids_in_every_process():
    """The Unigram trainer's hash maps are seeded per process; the raw trainer gave these texts other ids each run."""
    import subprocess
    import sys

    script = ("import json; from tests.conftest import DIALOGUES; from workbench import modeling; "
              "texts = ([d for d, _ in DIALOGUES] + [s for _, s in DIALOGUES]) * 20; "
              "print(json.dumps(sorted(modeling.train_tokenizer(texts, vocab_size=400).get_vocab().items())))")
    root = Path(__file__).resolve().parents[1]
    outs = {subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                           check=True).stdout for _ in range(3)}
    assert len(outs) == 1 and len(json.loads(outs.pop())) > 300
