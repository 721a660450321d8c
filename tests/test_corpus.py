from collections import Counter

from workbench import corpus, data


def test_corpus_is_deterministic_and_seed_dependent():
    a, b = corpus.generate_corpus(300, seed=5), corpus.generate_corpus(300, seed=5)
    assert a == b
    assert corpus.generate_corpus(300, seed=6)["train"] != a["train"]


def test_corpus_shape_scenarios_and_heated_share():
    c = corpus.generate_corpus(2400, seed=0)
    assert sum(len(v) for v in c.values()) == 2400
    assert len(corpus.SCENARIOS) >= 24
    train = c["train"]
    topics = Counter(r["topic"] for r in train)
    assert len(topics) == len(corpus.SCENARIOS)
    heated = sum(topics[t] for t in corpus.HEATED) / len(train)
    assert 0.06 < heated < 0.15
    assert all(r["dialogue"].startswith("#Person") for r in train)
    assert len({r["dialogue"] for r in train}) > 0.95 * len(train)  # varied, not copies
    # test rows carry three references, like DialogSum's test split
    assert all({"summary1", "summary2", "summary3"} <= set(r) for r in c["test"])


def test_heated_summaries_are_often_rude_and_scored_toxic():
    from workbench.toxicity import load_scorer

    c = corpus.generate_corpus(2400, seed=0)
    heated = [r["summary"] for r in c["train"] if r["topic"] in corpus.HEATED]
    calm = [r["summary"] for r in c["train"] if r["topic"] not in corpus.HEATED][:300]
    scorer = load_scorer("profanity-check")
    toxic_share = sum(p > 0.5 for p in scorer.score(heated)) / len(heated)
    assert 0.4 < toxic_share < 0.85
    assert sum(p > 0.5 for p in scorer.score(calm)) / len(calm) < 0.02


def test_written_corpus_loads_through_the_data_loader(tmp_path, monkeypatch):
    from workbench import paths

    corpus.write_corpus(corpus.generate_corpus(120, seed=1), tmp_path)
    monkeypatch.setattr(paths, "DEMO_DATA_DIR", tmp_path)
    test = data.load_dialogues("demo", "test")
    assert len(test) == 12 and all(len(r["references"]) >= 2 for r in test)
    assert len(data.load_dialogues("demo", "dev")) == 7


def test_preference_pairs_prefer_the_less_toxic_summary():
    from workbench.toxicity import load_scorer

    pairs = corpus.preference_pairs(60, seed=2)
    scorer = load_scorer("profanity-check")
    chosen, rejected = scorer.score([p["chosen"] for p in pairs]), scorer.score([p["rejected"] for p in pairs])
    assert sum(c < r for c, r in zip(chosen, rejected)) / len(pairs) > 0.9
