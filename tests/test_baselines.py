"""The rule-based baselines: what they write on a hand-made dialogue, and how they score on real DialogSum dev."""

from tests.conftest import needs_dialogsum
from workbench import baselines, data, scoring

DIALOGUE = ("#Person1#: Hello, Tom.\n"
            "#Person2#: Hi. How are you?\n"
            "#Person1#: I can't find my keys. Have you seen them?\n"
            "#Person2#: I think your sister took them.")


def test_lead_copies_the_first_utterance():
    assert baselines.lead(DIALOGUE) == "#Person1# and #Person2# talk about Hello, Tom."


def test_restate_skips_greetings_and_retells_from_outside():
    summary = baselines.restate(DIALOGUE)
    assert summary == "#Person1# and #Person2# talk about #Person1# can't find #Person1#'s keys. Have #Person2# seen them?"


def test_restate_retells_from_the_speaker_who_said_it():
    text = "#Person1#: Hi.\n#Person2#: Hello.\n#Person2#: I lost my wallet, and you know it."
    assert "#Person2# lost #Person2#'s wallet, and #Person1# know it" in baselines.restate(text)


def test_restate_reads_dialogsum_spaced_apostrophes_and_stops_after_enough_words():
    text = ("#Person1#: I ' m sorry.\n#Person2#: It ' s fine.\n#Person1#: We should paint the fence.\n"
            "#Person2#: The fence needs a new coat of paint before the party on Friday.\n#Person1#: Agreed.")
    summary = baselines.restate(text, min_words=6)
    assert summary.endswith("#Person1# is sorry. It's fine. They should paint the fence.")
    assert "party" not in summary


def test_no_turns_gives_only_the_opening():
    assert baselines.restate("no speaker tags here") == baselines.OPENING
    assert baselines.lead("") == baselines.OPENING


@needs_dialogsum
def test_restate_beats_lead_on_dialogsum_dev():
    rows = data.load_dialogues("dialogsum-local", "validation")
    refs = [r["references"] for r in rows]
    lead = scoring.rouge_per_example([baselines.lead(r["dialogue"]) for r in rows], refs)
    restate = scoring.rouge_per_example([baselines.restate(r["dialogue"]) for r in rows], refs)
    diff = scoring.paired_diff_ci([x["rouge1"] for x in restate], [x["rouge1"] for x in lead])
    assert diff["ci_low"] > 0.02, diff
