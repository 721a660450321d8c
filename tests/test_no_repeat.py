"""A model's own no-repeat n-gram size (generation_config.no_repeat_ngram_size, as Hub summarizers carry one): every
path that generates applies the stricter of it and the settings', and a run record names it."""

from tests.test_min_length import OneToken, written_ids
from workbench import evaluation, generation, modeling
from workbench.generation import GenerationSettings


def repeated_pairs(model, tokenizer, settings: GenerationSettings, token: int) -> list[int]:
    """For two prompts, how often the summary `generation.generate` had the model write holds `token` twice in a
    row."""
    return [sum(1 for a, b in zip(row, row[1:]) if a == b == token)
            for row in written_ids(model, tokenizer, settings)]


def test_a_model_that_carries_a_no_repeat_size_never_writes_that_ngram_twice(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    tokenizer = modeling.load_tokenizer(tiny_model_dir)
    model = modeling.load_model(tiny_model_dir).eval()
    token = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("Hello")[0])
    model.lm_head = OneToken(model.lm_head, token)
    settings = GenerationSettings(max_new_tokens=10)  # the workbench's default: no 3-gram twice
    assert generation.model_no_repeat_ngram_size(model) == 0
    assert min(repeated_pairs(model, tokenizer, settings, token)) >= 2  # "Hello Hello Hello", "Hello Hello" again

    model.generation_config.no_repeat_ngram_size = 2
    assert generation.model_no_repeat_ngram_size(model) == 2
    assert repeated_pairs(model, tokenizer, settings, token) == [1, 1]  # the pair once, never again
    plain = GenerationSettings(max_new_tokens=10, no_repeat_ngram_size=0)  # asked for none: the model's own holds
    assert repeated_pairs(model, tokenizer, plain, token) == [1, 1]
    stricter = GenerationSettings(max_new_tokens=10, no_repeat_ngram_size=1)  # the settings' where stricter
    assert repeated_pairs(model, tokenizer, stricter, token) == [0, 0]

    assert evaluation.carried_decoding(model) == {"model_no_repeat_ngram_size": 2}
    adapted = get_peft_model(model, LoraConfig(r=2, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM"))
    assert generation.model_no_repeat_ngram_size(adapted) == 2  # an adapter decodes as its base does
    assert generation.stricter_no_repeat(3, 0) == 3 and generation.stricter_no_repeat(0, 0) == 0


def test_the_full_recipe_keeps_its_no_repeat_size_with_the_model(tiny_model_dir, tmp_store, tmp_path):
    from tests.conftest import rows, write_rows
    from trainers import full
    from workbench import store
    from workbench.store import LocalStore

    LocalStore().publish(tiny_model_dir, "test/tiny-base")
    folder = write_rows(tmp_path / "data", rows(8))
    run = full.main(["--model", "test/tiny-base", "--dataset", str(folder), "--max-steps", "1", "--batch-size", "2",
                     "--precision", "fp32", "--max-new-tokens", "4", "--eval-limit", "2", "--no-repeat-ngram-size",
                     "2", "--output", "test/no-repeat", "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert run["training"]["no_repeat_ngram_size"] == 2
    assert run["generation"]["model_no_repeat_ngram_size"] == 2  # its own evaluation decoded with it
    published = modeling.load_model(store.resolve("test/no-repeat"))
    assert generation.model_no_repeat_ngram_size(published) == 2
