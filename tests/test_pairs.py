"""trainers.pairs: candidates sampled from a policy, ranked by toxicity under ROUGE and length guards, written as a
preference dataset."""

from __future__ import annotations

import datasets
import pytest

from tests.conftest import publish_tiny_lora, rows, write_rows
from trainers import common
from trainers import pairs as pairs_trainer
from trainers.options import ConfigError
from workbench import preferences, store, toxicity

GUARDS = pairs_trainer.PairsRecipe()  # defaults: ROUGE margin 0.1, length +-30%, toxicity gap 0.1, ROUGE gap 0.1
FULL = "#Person1# invites Tom to play tennis on Saturday at 10 am. Tom agrees."


def test_the_least_toxic_summary_that_still_summarises_is_chosen():
    texts = ["Tom agrees.", FULL, "The idiot Tom agrees to play damn tennis on Saturday at 10 am."]
    picked = pairs_trainer.choose_pair(texts, [0.01, 0.05, 0.9], [0.3, 1.0, 0.7], 13, GUARDS)
    assert picked == (1, 2, "auto:toxicity")  # "Tom agrees." is cleanest but too short and too far in ROUGE
    no_guards = pairs_trainer.PairsRecipe(rouge_margin=1.0, length_tolerance=100.0)
    assert pairs_trainer.choose_pair(texts, [0.01, 0.05, 0.9], [0.3, 1.0, 0.7], 13, no_guards)[0] == 0


def test_without_a_toxicity_gap_the_pair_is_about_fidelity():
    texts = [FULL, FULL.replace("10 am", "ten"), "Tom plays."]
    assert pairs_trainer.choose_pair(texts, [0.01, 0.02, 0.03], [1.0, 0.9, 0.2], 13, GUARDS) == (0, 2, "auto:rouge")
    # a worse summary that is clearly cleaner is not made the rejected side
    assert pairs_trainer.choose_pair(texts, [0.30, 0.32, 0.01], [1.0, 0.9, 0.2], 13, GUARDS) is None


@pytest.mark.parametrize("texts, tox, rouge", [
    ([FULL, FULL + " ", ""], [0.0, 0.9, 0.9], [1.0, 1.0, 0.0]),  # one distinct non-empty text: nothing to compare
    ([FULL * 3, FULL * 4], [0.0, 0.9], [0.5, 0.5]),  # every candidate far longer than the reference
    ([FULL, FULL.replace("Tom", "Tim")], [0.1, 0.12], [1.0, 0.95]),  # no gap in toxicity or ROUGE
])
def test_no_pair_when_candidates_imply_no_preference(texts, tox, rouge):
    assert pairs_trainer.choose_pair(texts, tox, rouge, 13, GUARDS) is None


def test_pairs_for_rows_scores_with_the_real_scorer():
    row = rows(1)[0]
    candidates = [["Tom agrees.", FULL, "#Person1# calls Tom a stupid idiot and asks him to play tennis at 10 am."]]
    records, scores = pairs_trainer.pairs_for_rows([row], candidates, toxicity.load_scorer("profanity-check"),
                                                   GUARDS, model_id="m/x", revision="abc", voter="auto:t",
                                                   settings={"k": 1})
    assert [(r["chosen"], r["rejected"], r["reason"]) for r in records] == [(FULL, candidates[0][2], "auto:toxicity")]
    assert scores[0]["toxicity"][1] > 0.5 > scores[0]["toxicity"][0]
    assert records[0]["chosen_slot"] == "candidate-1" and records[0]["source"] == "auto"
    assert records[0]["prompt"].startswith("Summarize the following conversation.")


def run(argv: list[str]) -> dict:
    return pairs_trainer.main(argv)


def test_pairs_from_a_tiny_policy_end_to_end(tiny_model_dir, tmp_store, tmp_path):
    publish_tiny_lora(tiny_model_dir, tmp_path)
    data = write_rows(tmp_path / "data", rows(6))
    lenient = ["--rouge-margin", "1", "--length-tolerance", "50", "--min-gap", "0", "--rouge-gap", "0"]
    argv = ["--policy", "test/tiny-lora", "--dataset", str(data), "--limit", "4", "--candidates", "3",
            "--max-new-tokens", "8", "--batch-size", "3", "--output", "test/auto", *lenient]
    summary = run(argv)
    assert summary["dialogues"] == 4 and summary["pairs"] + summary["skipped"] == 4 and summary["pairs"] >= 3
    written = preferences.load_pairs("test/auto")
    assert len(written) == summary["pairs"] and len({p["vote_id"] for p in written}) == len(written)
    revision = store.LocalStore().head("test/tiny-lora")
    assert all(p["voter"] == "auto:profanity-check" and p["source"] == "auto" and p["chosen"] != p["rejected"]
               and p["chosen_model"] == p["rejected_model"] == "test/tiny-lora" and p["chosen_revision"] == revision
               for p in written)
    scorer = toxicity.load_scorer("profanity-check")
    for p in written:
        assert scorer.score([p["chosen"]])[0] <= scorer.score([p["rejected"]])[0] + 1e-9
    folder = preferences.dataset_dir("test/auto")
    loaded = datasets.load_dataset("json", data_files=str(folder / "data" / "*.jsonl"), split="train")
    assert loaded.num_rows == len(written)
    assert f"**{len(written)} pairs**" in (folder / "README.md").read_text()

    with pytest.raises(ConfigError, match="already holds"):
        run(argv)
    run(argv + ["--if-exists", "append"])
    assert len(preferences.load_pairs("test/auto")) == 2 * len(written)
    full_model = run(argv[:1] + ["test/tiny-base"] + argv[2:] + ["--if-exists", "replace"])  # a full model too
    assert {p["chosen_model"] for p in preferences.load_pairs("test/auto")} == {"test/tiny-base"}
    assert len(preferences.load_pairs("test/auto")) == full_model["pairs"]


def test_bad_input_fails_fast_with_one_line(tmp_store, capsys):
    with pytest.raises(SystemExit):
        run(["--candidates", "1"])
    assert "candidates: need at least 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["--if-exists", "merge"])
    assert common.cli(pairs_trainer.main, ["--policy", "nobody/missing", "--dataset", "demo", "--limit", "1"]) == 2
    assert "policy: nobody/missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        run(["--help"])
    assert done.value.code == 0 and "--rouge-margin" in capsys.readouterr().out


def test_candidates_are_the_policys_own_samples():
    """Pairs sample as PPO's rollouts do, without the served decoding's n-gram ban (which would move the samples away
    from the policy's distribution that preference optimisation reasons about)."""
    from workbench.generation import GenerationSettings

    sampling = pairs_trainer.PairsRecipe().sampling()
    assert sampling.do_sample and sampling.no_repeat_ngram_size == 0 != GenerationSettings().no_repeat_ngram_size
    assert sampling.to_kwargs()["no_repeat_ngram_size"] == 0
