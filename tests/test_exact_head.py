"""The served head in reduced precision (`modeling.ExactTopLogits`): its leading logits are the fp32 product of the
head's weights and the hidden state it receives, plus, for an adapter that trained the head, that adapter's update."""

from __future__ import annotations

import warnings

import pytest
import torch

from workbench import modeling

ROUTES = ["first", "__base__", "second"]


@pytest.fixture
def adapted(tiny_model_dir):
    """The tiny model in bf16 with two LoRA adapters on q, v and the head (non-zero, different), served as the app
    serves it in bf16."""
    from peft import LoraConfig, get_peft_model

    base = modeling.load_model(tiny_model_dir, dtype="bf16")
    config = dict(r=4, lora_alpha=8, target_modules=["q", "v", "lm_head"], task_type="SEQ_2_SEQ_LM")
    with modeling.untied_head_adapters(base):
        model = get_peft_model(base, LoraConfig(**config), adapter_name="first")
        model.add_adapter("second", LoraConfig(**config))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    return modeling.prepare_for_inference(model, modeling.Precision(torch.bfloat16))


def test_the_leading_logits_carry_each_rows_own_head_update_in_fp32(adapted):
    head = adapted.get_base_model().lm_head
    assert isinstance(head, modeling.ExactTopLogits) and head.adapted
    seen = {}
    head.register_forward_hook(lambda module, args, out: seen.update(hidden=args[0], logits=out))
    ids = torch.tensor([[5, 6, 7, 8, 1]] * len(ROUTES))
    with torch.no_grad():
        adapted(input_ids=ids, decoder_input_ids=ids[:, :2], adapter_names=ROUTES)
    hidden, logits = seen["hidden"].float(), seen["logits"]
    lora = head.head
    for row, name in enumerate(ROUTES):
        expected = hidden[row] @ head.exact.float().T
        if name != "__base__":
            expected = expected + lora.lora_B[name](lora.lora_A[name](hidden[row])) * lora.scaling[name]
        top = logits[row].topk(head.k, dim=-1).indices
        assert torch.allclose(logits[row].gather(-1, top), expected.gather(-1, top), atol=1e-4), name
        if name != "__base__":  # the update matters: without it the leading logits are off by far more
            base_only = (hidden[row] @ head.exact.float().T).gather(-1, top)
            assert (expected.gather(-1, top) - base_only).abs().max() > 0.1


def test_a_head_update_is_kept_in_fp32_beyond_the_leading_logits(adapted):
    """peft casts base + update to the base's dtype; the base head hands it fp32 logits so that bf16 does not round
    the update away (and the update recovered for the leading logits is the one every other logit got)."""
    head = adapted.get_base_model().lm_head
    assert isinstance(head.head.base_layer, modeling.FloatLogits)
    hidden = torch.randn(2, 1, head.exact.shape[1], dtype=torch.bfloat16)
    with torch.no_grad():
        assert head.head.base_layer(hidden).dtype == torch.float32 and head(hidden).dtype == torch.float32


@pytest.mark.parametrize("tied", [False, True])
def test_peft_warns_of_weight_tying_only_where_the_head_shares_the_embeddings_tensor(tiny_model_dir, tied):
    from peft import LoraConfig, get_peft_model

    base = modeling.load_model(tiny_model_dir, dtype="fp32")
    assert base.config.tie_word_embeddings  # what transformers 5 saves for these T5 configs; peft reads it
    if tied:
        base.lm_head.weight = base.shared.weight
    with pytest.warns() as caught, modeling.untied_head_adapters(base):
        warnings.warn("a marker, so that pytest.warns has one to record", UserWarning)
        get_peft_model(base, LoraConfig(r=2, target_modules=["q", "lm_head"], task_type="SEQ_2_SEQ_LM"))
    assert any("tie_word_embeddings=True" in str(w.message) for w in caught) == tied


def test_a_published_head_adapter_holds_its_lora_weights_only(tiny_model_dir, tmp_path):
    """peft's default save of an adapter on lm_head adds the whole fp32 head beside it (7.1 MB against 1.0 MB for a
    q, v and lm_head adapter on the demo base); the trainers publish the LoRA matrices only, and they load back."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors import safe_open

    from trainers import common

    base = modeling.load_model(tiny_model_dir, dtype="fp32")
    with modeling.untied_head_adapters(base):
        adapted = get_peft_model(base, LoraConfig(r=2, target_modules=["q", "lm_head"], task_type="SEQ_2_SEQ_LM"))
    torch.nn.init.normal_(adapted.base_model.model.lm_head.lora_B["default"].weight)  # B starts at zero
    common.store_weights(adapted, tmp_path / "adapter", "bf16", base_ref="test/tiny-base")
    with safe_open(tmp_path / "adapter" / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any("lm_head.lora_A" in k for k in keys) and all("lora_" in k for k in keys)
    with modeling.untied_head_adapters(fresh := modeling.load_model(tiny_model_dir, dtype="fp32")):
        loaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter")
    assert torch.equal(loaded.base_model.model.lm_head.lora_B["default"].weight,
                       adapted.base_model.model.lm_head.lora_B["default"].weight)
