"""workbench.dropout: the cheap CPU dropout masks the trainers use. Same expectation as torch's dropout, the same
outputs as the stock model when nothing is dropped, gradients through the kept elements only, repeatable under a
seed, and the model put back as it was after the block."""

import json

import pytest
import torch
from torch import nn

from workbench import dropout, modeling


def test_the_mask_keeps_one_minus_p_and_the_scale_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    for p in (0.05, 0.1, 0.5):
        y = dropout.cheap_dropout(x, p)
        kept = (y != 0).float().mean().item()
        assert abs(kept - (1 - p)) < 0.005, (p, kept)
        assert abs(y.mean().item() - 1.0) < 0.01, (p, y.mean().item())
        assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)), rtol=1e-4)
    assert dropout.cheap_dropout(x, 0.3, training=False) is x
    assert dropout.cheap_dropout(x, 0.0) is x
    with pytest.raises(ValueError):
        dropout.cheap_dropout(x, 1.0)


def test_odd_shapes_and_bf16_get_a_mask_of_their_own_shape():
    torch.manual_seed(1)
    x = torch.randn(3, 5, 7).bfloat16()  # 105 elements: not a multiple of four
    y = dropout.cheap_dropout(x, 0.5)
    assert y.shape == x.shape and y.dtype == torch.bfloat16
    kept = y != 0
    assert 0 < kept.sum() < x.numel()
    assert torch.equal(y[kept], (x[kept] * 2).to(torch.bfloat16))


def test_gradients_flow_through_the_kept_elements_only_and_seeds_repeat():
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    torch.manual_seed(3)
    y = dropout.cheap_dropout(x, 0.25)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    assert torch.all(x.grad[~kept] == 0)
    torch.manual_seed(3)
    again = dropout.cheap_dropout(x.detach(), 0.25)
    assert torch.equal(again, y.detach())
    torch.manual_seed(4)
    assert not torch.equal(dropout.cheap_dropout(x.detach(), 0.25), y.detach())


def _batch(tokenizer):
    src = tokenizer(["#Person1#: Hi Tom, shall we play tennis?\n#Person2#: Sure.", "#Person1#: Bye."],
                    padding=True, return_tensors="pt")
    labels = tokenizer(["Tom will play tennis.", "They say bye."], padding=True, return_tensors="pt")
    return src, labels


def test_in_eval_mode_the_swapped_t5_computes_what_the_stock_one_does(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    tokenizer = modeling.load_tokenizer(tiny_model_dir)
    src, labels = _batch(tokenizer)
    real = labels.attention_mask.bool()
    for wrap in (False, True):
        model = modeling.load_model(tiny_model_dir)
        if wrap:  # a LoRA adapter around it: its lora_dropout is swapped too
            model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q", "v"]))
        model.eval()
        with torch.no_grad():
            stock = model(**src, labels=labels.input_ids).logits
            with dropout.cpu_dropout(model):
                assert any(isinstance(m, dropout.CheapDropout) for m in model.modules())
                swapped = model(**src, labels=labels.input_ids).logits
        assert torch.allclose(stock[real], swapped[real], atol=1e-4), (stock - swapped)[real].abs().max()


def test_training_drops_attention_weights_and_the_block_restores_the_model(tiny_model_dir, tmp_path, monkeypatch):
    model = modeling.load_model(tiny_model_dir)
    tokenizer = modeling.load_tokenizer(tiny_model_dir)
    src, labels = _batch(tokenizer)
    before = {name: type(m) for name, m in model.named_modules()}
    attention = model.config._attn_implementation
    model.train()
    seen = []
    original = dropout.cheap_dropout

    def spy(x, p, training=True):
        seen.append(tuple(x.shape))
        return original(x, p, training)

    monkeypatch.setattr(dropout, "cheap_dropout", spy)
    with dropout.cpu_dropout(model):
        assert model.config._attn_implementation == dropout.ATTENTION
        loss = model(**src, labels=labels.input_ids).loss
        loss.backward()
        model.save_pretrained(tmp_path / "inside", safe_serialization=True)
    heads = model.config.num_heads
    assert any(len(s) == 4 and s[1] == heads for s in seen), seen  # (batch, heads, query, key): the attention weights
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert {name: type(m) for name, m in model.named_modules()} == before
    assert model.config._attn_implementation == attention
    assert all(m.training for m in model.modules() if isinstance(m, nn.Dropout))
    saved = json.loads((tmp_path / "inside" / "config.json").read_text())
    assert dropout.ATTENTION not in json.dumps(saved)  # a checkpoint written inside the block loads anywhere


def test_on_request_off_nothing_changes(tiny_model_dir):
    model = modeling.load_model(tiny_model_dir)
    with dropout.cpu_dropout(model, enabled=False):
        assert not any(isinstance(m, dropout.CheapDropout) for m in model.modules())
        assert model.config._attn_implementation != dropout.ATTENTION
