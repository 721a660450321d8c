import math

import numpy as np
import pytest

from workbench import scoring


def test_rouge_matches_hand_computed_values():
    # prediction: "the cat sat on the mat" (6 tokens); reference: "the cat lay on the mat" (6 tokens)
    # unigram overlap (clipped counts): the x2, cat, on, mat = 5 -> P = R = F1 = 5/6
    # bigrams: pred {the cat, cat sat, sat on, on the, the mat}; ref {the cat, cat lay, lay on, on the, the mat}
    #   overlap 3 of 5 -> F1 = 3/5
    # LCS: the cat _ on the mat = 5 -> F1 = 5/6
    [score] = scoring.rouge_per_example(["the cat sat on the mat"], [["the cat lay on the mat"]])
    assert score["rouge1"] == pytest.approx(5 / 6)
    assert score["rouge2"] == pytest.approx(3 / 5)
    assert score["rougeL"] == pytest.approx(5 / 6)
    assert score["rougeLsum"] == pytest.approx(5 / 6)


def test_rouge_different_lengths_hand_computed():
    # pred 4 tokens "a b c d", ref 2 tokens "a b": overlap 2 -> P=2/4, R=2/2, F1 = 2PR/(P+R) = 2/3
    [score] = scoring.rouge_per_example(["alpha beta gamma delta"], ["alpha beta"])
    assert score["rouge1"] == pytest.approx(2 / 3)
    assert score["rouge2"] == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))  # 1 of 3 pred bigrams, 1 of 1 ref


def test_multi_reference_takes_best_per_type():
    refs = ["completely different words here", "the cat sat on the mat"]
    [multi] = scoring.rouge_per_example(["the cat sat on the mat"], [refs])
    assert multi["rouge1"] == pytest.approx(1.0)
    [single] = scoring.rouge_per_example(["the cat sat on the mat"], [refs[:1]])
    assert single["rouge1"] == 0.0


def test_rouge_lsum_uses_sentences():
    # two sentences in swapped order: sentence-level LCS recovers both, plain LCS only one of them
    pred = "Tom buys milk. Anna sells bread."
    ref = "Anna sells bread. Tom buys milk."
    [score] = scoring.rouge_per_example([pred], [[ref]])
    assert score["rougeLsum"] == pytest.approx(1.0)
    assert score["rougeL"] < 0.7


def test_rouge_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        scoring.rouge_per_example(["a", "b"], [["a"]])


def test_bootstrap_ci_covers_mean_and_is_deterministic():
    rng = np.random.default_rng(1)
    values = rng.normal(0.4, 0.1, size=200)
    ci = scoring.mean_ci(values, seed=3)
    assert ci["n"] == 200 and ci["ci_low"] < ci["mean"] < ci["ci_high"]
    # the 95% CI half-width is about 1.96 * sd / sqrt(n)
    assert (ci["ci_high"] - ci["ci_low"]) / 2 == pytest.approx(1.96 * values.std(ddof=1) / math.sqrt(200), rel=0.2)
    assert scoring.mean_ci(values, seed=3) == ci


def test_paired_difference_detects_a_consistent_shift():
    before = np.linspace(0, 1, 50)
    after = before - 0.1 + np.random.default_rng(0).normal(0, 0.01, 50)
    diff = scoring.paired_diff_ci(after, before)
    assert diff["ci_high"] < 0 and diff["mean"] == pytest.approx(-0.1, abs=0.01)


def test_word_overlap_marks_shared_words():
    marked = scoring.word_overlap("Tom buys apples", "tom bought an apple")
    words = {w: m for w, m in marked if w.strip()}
    assert words == {"Tom": True, "buys": False, "apples": True}  # stemmed: apples -> appl
    assert "".join(w for w, _ in marked) == "Tom buys apples"


def test_degenerate_outputs_are_recognised():
    from workbench.scoring import is_degenerate

    assert is_degenerate("#Person1# and #Person2# as aneeeees aneeees aneeees aneeees aneeees")
    assert is_degenerate("a trip to Sydney for 2 days, who is 1111111")
    assert is_degenerate("they go go go go home")
    assert is_degenerate("he says that he says that he says that")
    assert not is_degenerate("#Person1# asks #Person2# to fix the bike, and #Person2# agrees to fix it by Friday.")
    assert not is_degenerate("")


def test_made_up_words_are_the_words_no_known_text_has():
    known = set(scoring.letter_words("#Person1#: Steven, persuade her not to divorce me. #Person2#: I will try."))
    assert scoring.letter_words("#Person1#'s divorcesuade, OK?") == ["s", "divorcesuade", "ok"]
    share, unknown = scoring.made_up_words(["#Person1# asks Steven to divorcesuade her.",
                                            "#Person2# will try to persuade her."], known)
    assert unknown == ["asks", "divorcesuade"] and share == 2 / 10  # in order, of ten words
    assert scoring.made_up_words([], known) == (0.0, [])


def test_lone_letters_are_words_begun_and_not_finished_not_articles_or_contractions():
    assert scoring.lone_letters("#Person2# will be happy if he c. #Person1# wants the M mobile.") == ["c", "M"]
    assert scoring.lone_letters("#Person1#'s bike: I don't know, a car, it's #Person2#'s.") == []


def test_made_up_words_command_reads_a_runs_outputs_against_a_datasets_words(tmp_path, capsys):
    from tests.conftest import rows, write_rows
    from trainers import made_up_words
    from workbench.io import atomic_write_jsonl

    data_dir = write_rows(tmp_path / "data", rows(4))
    real = rows(4)[0]["summary"]
    atomic_write_jsonl(tmp_path / "run.jsonl", [{"fname": "a", "prediction": real},
                                            {"fname": "b", "prediction": real + " Zorbleglue."}])
    report = made_up_words.main(["--runs", str(tmp_path / "run.jsonl"), "--dataset", str(data_dir), "--splits", "test"])
    entry = report[str(tmp_path / "run.jsonl")]
    assert entry["holding"] == 1 and entry["summaries"] == 2 and entry["lone_letters"] == 0
    assert entry["share"] == 1 / (2 * len(scoring.letter_words(real)) + 1)
    assert "zorbleglue" in capsys.readouterr().out
    with pytest.raises(Exception, match="no per-example outputs"):
        made_up_words.main(["--runs", "no-such-run", "--dataset", str(data_dir)])
