import math

import pytest
import torch

from workbench import toxicity


def test_profanity_scorer_separates_rude_from_neutral():
    scorer = toxicity.load_scorer("profanity-check")
    rude, calm = scorer.score(["#Person1# calls #Person2# a stupid idiot.",
                               "#Person1# books a table for two at 7 pm."])
    assert rude > 0.8 and calm < 0.2
    assert toxicity.load_scorer("profanity-check") is scorer  # cached: one instance for app and trainers


def test_profanity_scorer_matches_the_package_probabilities():
    """The scorer's one-product shortcut gives what alt-profanity-check's own predict_prob gives, on calm, rude,
    empty, long and non-English texts, and on the demo test split's summaries."""
    from profanity_check import predict_prob

    from workbench import data

    scorer = toxicity.load_scorer("profanity-check")
    assert scorer._linear is not None  # the shortcut is what runs with the pinned package
    texts = ["#Person1# calls #Person2# a stupid idiot.", "They agree to meet at noon.", "", "what the fuck",
             "Ça coûte 12 € — très cher!", "word " * 400, "#Person2# tells #Person1# about a trip to Rome."]
    texts += [r["summary"] for r in data.load_dialogues(data.DEMO, "test", limit=200)]
    assert scorer.score(texts) == pytest.approx([float(p) for p in predict_prob(texts)], abs=1e-12)


def test_reward_kinds_are_monotone_in_toxicity():
    scorer = toxicity.load_scorer("profanity-check")
    texts = ["You are a stupid idiot.", "They agree to meet at noon."]
    p = scorer.score(texts)
    assert scorer.reward(texts, "one_minus_p") == pytest.approx([1 - x for x in p])
    logodds = scorer.reward(texts, "logodds")
    assert logodds[0] < 0 < logodds[1]
    assert logodds[1] == pytest.approx(math.log((1 - p[1]) / p[1]), rel=1e-3)
    with pytest.raises(ValueError, match="logit"):
        scorer.reward(texts, "logit")


def test_unknown_scorer_spec_is_rejected():
    with pytest.raises(ValueError, match="profanity-check"):
        toxicity.load_scorer("pickle:/tmp/model.pkl")


def publish_classifier(tmp_path, repo="test/hate-clf"):
    """A tiny RoBERTa classifier with the reference model's labels, published to the store; returns (model, tok)."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from tests.conftest import DIALOGUES
    from workbench import modeling
    from workbench.store import LocalStore

    tok = modeling.train_tokenizer([d for d, _ in DIALOGUES] * 10, vocab_size=300)
    config = RobertaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=130, pad_token_id=0,
                           id2label={0: "nothate", 1: "hate"}, label2id={"nothate": 0, "hate": 1})
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(config)
    folder = tmp_path / "clf"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    LocalStore().publish(folder, repo)
    return model, tok


def test_hf_classifier_scorer_finds_the_hate_class(tmp_path, tmp_store):
    """A tiny RoBERTa classifier with the reference model's labels, published to the store and loaded by name."""
    model, tok = publish_classifier(tmp_path)
    scorer = toxicity.load_scorer("hf:test/hate-clf")
    texts = ["#Person1#: hi", "#Person2#: shut up"]
    probs = scorer.score(texts)
    enc = tok(texts, return_tensors="pt", padding=True)
    expected = model.eval()(**enc).logits.softmax(-1)[:, 1].tolist()
    assert probs == pytest.approx(expected, abs=1e-5)
    assert scorer.reward(texts, "logit") == pytest.approx(model(**enc).logits[:, 0].tolist(), abs=1e-5)


def test_hf_classifier_runs_on_the_device_it_is_given(tmp_path, tmp_store):
    """The app hands its one device to the scorer; `meta` shows the classifier really went where it was told."""
    publish_classifier(tmp_path, "test/hate-clf-device")
    on_meta = toxicity.load_scorer("hf:test/hate-clf-device", device="meta")
    assert {p.device.type for p in on_meta.model.parameters()} == {"meta"}
    default = toxicity.load_scorer("hf:test/hate-clf-device")
    assert default is not on_meta and {p.device.type for p in default.model.parameters()} == {
        "cuda" if torch.cuda.is_available() else "cpu"}
    assert toxicity.load_scorer("profanity-check", device="meta") is toxicity.load_scorer("profanity-check")
