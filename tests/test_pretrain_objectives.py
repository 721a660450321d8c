"""The base's pretraining objectives: span corruption, prefix LM and reconstruction, and how the collator mixes them."""

import random
from collections import Counter

import pytest

from trainers import options, pretrain

SENTINELS = list(range(1000, 1100))
EOS = 1


def test_span_corruption_input_and_target_rebuild_the_window():
    ids = list(range(10, 60))
    inputs, targets = pretrain.span_corruption(ids, SENTINELS, EOS, random.Random(0))
    assert inputs[-1] == EOS and targets[-1] == EOS
    # splice the spans back into the input at their sentinels: the original window returns
    spans, current = {}, None
    for t in targets[:-1]:
        if t in SENTINELS:
            current = t
            spans[current] = []
        else:
            spans[current].append(t)
    rebuilt = [x for t in inputs[:-1] for x in (spans[t] if t in SENTINELS else [t])]
    assert rebuilt == ids
    assert 0 < sum(len(s) for s in spans.values()) < len(ids) / 3


def test_reconstruct_masks_spans_in_the_input_and_asks_for_the_whole_window():
    ids = list(range(10, 70))
    inputs, targets = pretrain.reconstruct(ids, SENTINELS, EOS, random.Random(1))
    assert targets == ids + [EOS]
    assert any(t in SENTINELS for t in inputs)
    kept = [t for t in inputs[:-1] if t not in SENTINELS]
    assert len(kept) < len(ids) and kept == [t for t in ids if t in set(kept)]  # in order, gaps where masked


def test_collator_mixes_the_three_objectives_in_the_configured_shares(tiny_tokenizer):
    config = options.parse(pretrain.PretrainRecipe, ["--prefix-lm-share", "0.25", "--reconstruct-share", "0.5",
                                                      "--max-length", "64", "--reconstruct-length", "48"])
    collator = pretrain.PretrainCollator(tiny_tokenizer, config, seed=0)
    ids = list(range(10, 90))
    kinds = Counter()
    sentinels = set(collator.sentinels)
    for _ in range(200):
        batch = collator([{"input_ids": ids + [tiny_tokenizer.eos_token_id]}])
        labels = [t for t in batch["labels"][0].tolist() if t != -100]
        inputs = batch["input_ids"][0].tolist()
        if labels[0] in sentinels:
            kinds["span"] += 1
        elif not any(t in sentinels for t in inputs):
            kinds["prefix"] += 1
        else:
            assert len(labels) == 49  # the first reconstruct_length tokens of the window, then </s>
            kinds["reconstruct"] += 1
    assert 30 < kinds["prefix"] < 75 and 75 < kinds["reconstruct"] < 125 and 25 < kinds["span"] < 75, kinds


def test_shares_that_leave_no_room_are_refused_in_one_line():
    with pytest.raises(SystemExit) as exc:
        options.parse(pretrain.PretrainRecipe, ["--prefix-lm-share", "0.6", "--reconstruct-share", "0.6"])
    assert exc.value.code == 2


def test_copy_prior_points_one_encoder_head_at_the_left_neighbour():
    import torch

    from workbench import modeling

    model = modeling.build_model(modeling.demo_config(300, d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
                                                      num_heads=2, d_kv=32), seed=0).eval()
    model.set_attn_implementation("eager")  # sdpa does not return attention weights
    ids = torch.randint(10, 300, (1, 12))

    def left_share() -> float:
        with torch.no_grad():
            out = model.encoder(input_ids=ids, output_attentions=True)
        weights = out.attentions[0][0, 0]  # layer 0, head 0: [query, key]
        return float(torch.stack([weights[i, i - 1] for i in range(1, 12)]).mean())

    before = left_share()
    buckets = modeling.add_copy_prior(model, strength=10.0)
    assert buckets == [1]  # T5's bidirectional buckets: offset -1 is bucket 1
    assert before < 0.3 < 0.9 < left_share()
    other = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight[:, 1]
    assert float(other.detach().abs().max()) < 5  # the other heads keep their random start


def test_a_copy_prior_of_context_two_points_heads_at_two_left_tokens_and_the_decoder_at_its_last_output():
    import torch

    from workbench import modeling

    model = modeling.build_model(modeling.demo_config(300, d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
                                                      num_heads=2, d_kv=32), seed=0).eval()
    model.set_attn_implementation("eager")
    assert modeling.add_copy_prior(model, strength=10.0, context=2) == [1, 2]
    ids = torch.randint(10, 300, (1, 12))
    with torch.no_grad():
        encoder = model.encoder(input_ids=ids, output_attentions=True).attentions[0][0]  # layer 0: [head, q, k]
        decoder = model.decoder(input_ids=ids, encoder_hidden_states=torch.zeros(1, 12, 64),
                                output_attentions=True).attentions[0][0]
    for head, offset in ((0, 1), (1, 2)):
        assert float(torch.stack([encoder[head, i, i - offset] for i in range(2, 12)]).mean()) > 0.9
    assert float(torch.stack([decoder[0, i, i - 1] for i in range(2, 12)]).mean()) > 0.9
    assert float(torch.stack([decoder[1, i, i - 1] for i in range(2, 12)]).mean()) < 0.5  # left as it was
    with pytest.raises(ValueError, match="context 3"):
        modeling.add_copy_prior(model, context=3)  # two heads: at most two tokens


def test_copy_warmup_copies_dialogue_windows_when_given_them():
    from workbench import modeling

    model = modeling.build_model(modeling.demo_config(300, d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
                                                      num_heads=2, d_kv=32), seed=0)
    modeling.add_copy_prior(model, 10.0, context=2)
    texts = [[10 + (i * 7 + j * 3) % 50 for j in range(60)] for i in range(20)]  # repeated ids, as in real text
    assert pretrain.copy_warmup(model, 300, 150, seed=0, windows=texts, max_length=16, lr=3e-3) > 0.5


def test_pretrain_recipe_takes_a_copy_prior():
    config = options.parse(pretrain.PretrainRecipe, ["--copy-prior", "8"])
    assert config.copy_prior == 8.0
    with pytest.raises(SystemExit):
        options.parse(pretrain.PretrainRecipe, ["--copy-prior", "-1"])


def test_copy_warmup_forms_a_copy_circuit_with_the_prior_and_not_without():
    """The finding behind the copy prior, at test scale: 300 steps of copying random strings reach high token
    accuracy with the previous-token prior and stay low without it (measured: 0.88 against 0.30)."""
    from workbench import modeling

    def warmed(prior: float) -> float:
        model = modeling.build_model(modeling.demo_config(300, d_model=64, d_ff=128, num_layers=2,
                                                          num_decoder_layers=2, num_heads=2, d_kv=32), seed=0)
        if prior:
            modeling.add_copy_prior(model, prior)
        return pretrain.copy_warmup(model, 200, 300, seed=0, span=40, max_length=8, lr=3e-3)

    with_prior, without = warmed(10.0), warmed(0.0)
    assert with_prior > 0.7 and without < 0.5 and with_prior - without > 0.3, (with_prior, without)


def test_copy_warmup_in_bf16_autocast_forms_the_circuit_and_keeps_fp32_weights(monkeypatch):
    """copy_warmup(bf16=True), as the demo recipe's precision 'auto' runs it on a bf16 CPU: every forward pass runs
    under bf16 autocast, the weights stay fp32, and the copy circuit still forms (measured at this scale: 0.88 in fp32,
    the same bar in bf16)."""
    import torch

    from workbench import modeling

    model = modeling.build_model(modeling.demo_config(300, d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
                                                      num_heads=2, d_kv=32), seed=0)
    modeling.add_copy_prior(model, 10.0)
    autocast = []
    forward = type(model).forward

    def spy(self, *args, **kwargs):
        autocast.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", spy)
    accuracy = pretrain.copy_warmup(model, 200, 300, seed=0, span=40, max_length=8, lr=3e-3, bf16=True)
    assert accuracy > 0.7, accuracy
    assert len(autocast) == 300 and all(autocast)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    autocast.clear()
    pretrain.copy_warmup(model, 200, 2, seed=0, span=40, max_length=8)  # the default: fp32
    assert autocast == [False, False]


def test_copy_substitution_puts_tokens_the_windows_never_hold_into_the_copied_strings(monkeypatch):
    """copy_warmup(substitute=...) copies windows in which that share of tokens is drawn from the whole vocabulary:
    the strings the model copies hold ids the dialogues never do, about as often as asked."""
    import torch

    from workbench import modeling

    model = modeling.build_model(modeling.demo_config(300, d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1,
                                                      num_heads=2, d_kv=16), seed=0)
    seen = []
    forward = type(model).forward

    def spy(self, input_ids=None, **kwargs):
        seen.append(input_ids.clone())
        return forward(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(type(model), "forward", spy)
    texts = [[10 + (i + j) % 20 for j in range(60)] for i in range(10)]  # ids 10..29 only
    pretrain.copy_warmup(model, 300, 20, seed=0, windows=texts, max_length=16, substitute=0.3, low=100)
    ids = torch.cat([s.flatten() for s in seen])
    tokens = ids[(ids != 0) & (ids != 1)]
    foreign = ((tokens >= 100) & (tokens < 300)).float().mean()
    assert 0.2 < float(foreign) < 0.4 and not ((tokens >= 30) & (tokens < 100)).any()
    seen.clear()
    pretrain.copy_warmup(model, 300, 5, seed=0, windows=texts, max_length=16)  # no substitution: only the windows
    ids = torch.cat([s.flatten() for s in seen])
    assert not (ids >= 30).any()
    # the windows of one batch are equally long (nothing is padding), and lengths vary from batch to batch
    assert all((s != 0).all() for s in seen) and len({s.shape[1] for s in seen}) > 1


def test_pretrain_recipe_takes_a_copy_finish():
    config = options.parse(pretrain.PretrainRecipe, ["--copy-finish-steps", "400", "--copy-substitute", "0.3"])
    assert config.copy_finish_steps == 400 and config.copy_substitute == 0.3
    with pytest.raises(SystemExit):
        options.parse(pretrain.PretrainRecipe, ["--copy-substitute", "1.0"])
