"""A model's own minimum summary length (generation_config.min_new_tokens): carried by the base, shared by every
model and adapter made from it, applied by every path that generates."""

import torch

from workbench import generation, modeling
from workbench.generation import GenerationSettings


class EosFirst(torch.nn.Module):
    """An output head that makes the end of the summary the best token at every step."""

    def __init__(self, head, eos: int):
        super().__init__()
        self.head, self.eos = head, eos

    def forward(self, hidden):
        logits = self.head(hidden)
        logits[..., self.eos] += 1000.0
        return logits


def new_tokens_written(model, tokenizer, settings: GenerationSettings) -> list[int]:
    """How many tokens `generation.generate` had the model write for two prompts (the decoder start not counted)."""
    seen, original = [], model.generate

    def spy(**kwargs):
        out = original(**kwargs)
        seen.extend((row != tokenizer.pad_token_id).sum().item() for row in out[:, 1:])
        return out

    model.generate = spy
    generation.generate(model, tokenizer, ["#Person1#: Hi.\n#Person2#: Hello.", "#Person1#: Bye."], settings)
    return seen


def test_a_model_that_carries_a_minimum_length_writes_at_least_that_many_tokens(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    tokenizer = modeling.load_tokenizer(tiny_model_dir)
    model = modeling.load_model(tiny_model_dir).eval()
    model.lm_head = EosFirst(model.lm_head, tokenizer.eos_token_id)
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
