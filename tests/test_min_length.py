"""A model's own minimum summary length (generation_config.min_new_tokens), and an adapter's (its folder's
generation_config.json), applied by every path that generates: each row of a mixed-adapter batch its own."""

import torch

from workbench import generation, modeling
from workbench.generation import GenerationSettings


class OneToken(torch.nn.Module):
    """An output head that makes one token the best at every step (the end of the summary: the model stops at once;
    any other: it repeats that token)."""

    def __init__(self, head, token: int):
        super().__init__()
        self.head, self.token = head, token

    def forward(self, hidden):
        logits = self.head(hidden)
        logits[..., self.token] += 1000.0
        return logits


def written_ids(model, tokenizer, settings: GenerationSettings) -> list[list[int]]:
    """The token ids `generation.generate` had the model write for two prompts (the decoder start left out)."""
    seen, original = [], model.generate

    def spy(**kwargs):
        out = original(**kwargs)
        seen.extend(row[1:] for row in out.tolist())
        return out

    model.generate = spy
    generation.generate(model, tokenizer, ["#Person1#: Hi.\n#Person2#: Hello.", "#Person1#: Bye."], settings)
    return seen


def new_tokens_written(model, tokenizer, settings: GenerationSettings) -> list[int]:
    """How many tokens `generation.generate` had the model write for two prompts (the decoder start not counted)."""
    return [sum(t != tokenizer.pad_token_id for t in row) for row in written_ids(model, tokenizer, settings)]


def test_a_model_that_carries_a_minimum_length_writes_at_least_that_many_tokens(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    tokenizer = modeling.load_tokenizer(tiny_model_dir)
    model = modeling.load_model(tiny_model_dir).eval()
    model.lm_head = OneToken(model.lm_head, tokenizer.eos_token_id)
    assert generation.model_min_new_tokens(model) == 0
    assert new_tokens_written(model, tokenizer, GenerationSettings(max_new_tokens=8)) == [1, 1]  # the end at once

    model.generation_config.min_new_tokens = 5
    assert generation.model_min_new_tokens(model) == 5
    assert new_tokens_written(model, tokenizer, GenerationSettings(max_new_tokens=8)) == [6, 6]  # 5, then the end
    assert new_tokens_written(model, tokenizer, GenerationSettings(max_new_tokens=8, min_new_tokens=7)) == [8, 8]
    assert new_tokens_written(model, tokenizer, GenerationSettings(max_new_tokens=3)) == [3, 3]  # the limit wins

    adapted = get_peft_model(model, LoraConfig(r=2, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM"))
    assert generation.model_min_new_tokens(adapted) == 5  # an adapter writes as long as its base
    floor = generation.with_model_floor(GenerationSettings(max_new_tokens=8), adapted)
    assert floor.min_new_tokens == 5 and GenerationSettings().to_kwargs().get("min_new_tokens") is None
    # and a run record names it, for evaluation and trainers.reevaluate alike
    from workbench import evaluation

    assert evaluation.carried_decoding(adapted) == {"model_min_new_tokens": 5}
    assert evaluation.carried_decoding(None) == {}


def test_an_adapter_carries_its_own_minimum_and_a_mixed_batch_holds_each_row_to_its_own(tiny_model_dir, tmp_path):
    """A summarizer's minimum belongs to the summarizer: an adapter keeps its own in its folder
    (generation_config.json), read back when it is attached; in one mixed-adapter batch the prompted base writes as
    it likes while the adapter rows write their minimum, and each row is what it is alone."""
    from peft import LoraConfig, get_peft_model

    tokenizer = modeling.load_tokenizer(tiny_model_dir)
    base = modeling.load_model(tiny_model_dir).eval()
    base.lm_head = OneToken(base.lm_head, tokenizer.eos_token_id)
    adapted = get_peft_model(base, LoraConfig(r=2, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM"))
    generation.set_model_min_new_tokens(adapted, 4)  # the adapter's own; the base keeps none
    assert generation.model_min_new_tokens(adapted) == 4
    assert generation.model_min_new_tokens(adapted, generation.BASE_ADAPTER) == 0
    assert adapted.get_base_model().generation_config.min_new_tokens is None
    adapted.save_pretrained(tmp_path / "four")
    modeling.save_adapter_min_new_tokens(adapted, "default", tmp_path / "four")
    assert "min_new_tokens" not in (tmp_path / "four" / "adapter_config.json").read_text()  # peft's file untouched
    generation.set_model_min_new_tokens(adapted, 0)  # explicitly none, whatever the base carries
    adapted.save_pretrained(tmp_path / "none")
    modeling.save_adapter_min_new_tokens(adapted, "default", tmp_path / "none")
    assert modeling.read_adapter_min_new_tokens(tmp_path / "none") == 0

    base = modeling.load_model(tiny_model_dir).eval()
    base.lm_head = OneToken(base.lm_head, tokenizer.eos_token_id)
    base.generation_config.min_new_tokens = 2  # a base that carries a minimum of its own
    model = modeling.load_adapters(base, {"four": tmp_path / "four", "none": tmp_path / "none"})
    assert modeling.read_adapter_min_new_tokens(tiny_model_dir) is None
    assert [generation.model_min_new_tokens(model, n) for n in ("four", "none", generation.BASE_ADAPTER)] == [4, 0, 2]

    seen, original = [], model.generate

    def spy(**kwargs):
        out = original(**kwargs)
        seen.append([(row != tokenizer.pad_token_id).sum().item() for row in out[:, 1:]])
        return out

    model.generate = spy
    prompt = "#Person1#: Hi.\n#Person2#: Hello."
    names = ["four", generation.BASE_ADAPTER, "none", "four"]
    settings = GenerationSettings(max_new_tokens=8)
    together = generation.generate(model, tokenizer, [prompt] * 4, settings, adapter_names=names)
    assert seen == [[5, 3, 1, 5]]  # each row its own minimum, then the end: 4, the base's 2, none
    alone = [generation.generate(model, tokenizer, [prompt], settings, adapter_names=[n])[0] for n in names]
    assert alone == together and [len(s) for s in seen[1:]] == [1, 1, 1, 1]
    assert seen[1:] == [[5], [3], [1], [5]]
    # the settings' own minimum still holds every row to at least that much
    seen.clear()
    generation.generate(model, tokenizer, [prompt] * 4, GenerationSettings(max_new_tokens=8, min_new_tokens=3),
                        adapter_names=names)
    assert seen == [[5, 4, 4, 5]]


def test_an_adapters_minimum_is_read_as_untrusted_input(tmp_path):
    import json

    import pytest

    for bad in (-1, 10**9, "20", 2.5, True):
        (tmp_path / "generation_config.json").write_text(json.dumps({"min_new_tokens": bad}))
        with pytest.raises(ValueError, match="min_new_tokens must be a whole number"):
            modeling.read_adapter_min_new_tokens(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"max_new_tokens": 64}))
    assert modeling.read_adapter_min_new_tokens(tmp_path) is None
