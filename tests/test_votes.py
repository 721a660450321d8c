"""Votes in Compare: the vote service's checks (workbench.votes) and the app's `vote` / `preferences` endpoints
through gradio_client on tiny models, including 20 concurrent voters x 10 votes."""

from __future__ import annotations

import concurrent.futures
import json
import zipfile
from pathlib import Path

import pytest

from tests import ui_fixtures as uf
from tests.conftest import DIALOGUES
from workbench import preferences, votes as votes_mod
from workbench.app_service import CompareResult, SlotOutput
from workbench.modelset import LABELS, SLOTS
from workbench.votes import NOTHING_PICKED, NOTHING_YET, Votes

COMPARE_DEFAULTS = dict(decoding="greedy", max_new_tokens=64, num_beams=4, temperature=0.7, top_p=0.9, seed=0)
TEXTS = {"base": "Tom and Ann talk.", "full": "Tom invites Ann to tennis on Saturday.", "lora": "Ann agrees to play.",
         "ppo": "Tom is an idiot."}


def fake_result(texts=TEXTS, **extra) -> CompareResult:
    """A Compare result as WorkbenchService.compare returns it (only the fields a vote reads)."""
    models = {s: SlotOutput(s, LABELS[s], model=f"demo/{s}", revision=f"rev-{s}", available=t is not None, text=t)
              for s, t in texts.items()}
    return CompareResult(True, "", prompt="Summarize: ...", settings={"max_new_tokens": 64, "do_sample": False},
                         seed=None, models=models, **extra)


@pytest.fixture
def book(tmp_store):
    return Votes("test/votes")


# ------------------------------------------------------------------------------------------------ the service


def test_a_vote_on_a_comparison_is_saved_with_models_revisions_settings_and_voter(book):
    held = Votes.comparison(fake_result(), "#Person1#: tennis?\x00\x1b[31m")
    answer = book.save(held, best="full", unacceptable=["ppo"], own_summary="", voter=None)
    assert answer["ok"] and answer["pairs"] == 5 and "Full fine-tune is the best" in answer["message"]
    records = preferences.load_pairs("test/votes")
    assert {(r["chosen_slot"], r["rejected_slot"]) for r in records} == \
        {("full", "base"), ("full", "lora"), ("full", "ppo"), ("base", "ppo"), ("lora", "ppo")}
    first = records[0]
    assert first["vote_id"] == answer["vote_id"] and first["voter"] == "anonymous"
    assert first["dialogue"] == "#Person1#: tennis?[31m"  # control characters removed (the input rules of the app)
    assert (first["chosen_model"], first["chosen_revision"]) == ("demo/full", "rev-full")
    assert json.loads(first["settings"]) == {"max_new_tokens": 64, "do_sample": False}
    assert first["prompt"] == "Summarize: ..."


def test_nothing_to_vote_on_and_nothing_picked_are_explained(book):
    assert book.save(None, best="lora")["message"] == NOTHING_YET
    refused = Votes.comparison(CompareResult.refused("The dialogue is empty"), "")
    assert refused is None and book.save(refused, best="lora")["message"] == NOTHING_YET
    none_available = Votes.comparison(fake_result({s: None for s in SLOTS}), "d")
    assert none_available is None
    held = Votes.comparison(fake_result(), "d")
    for empty in (dict(), dict(best="", unacceptable=[], own_summary="  \n\x00 ")):
        assert book.save(held, **empty) == {"ok": False, "message": NOTHING_PICKED}
    assert not preferences.data_path("test/votes").exists()


@pytest.mark.parametrize("choice, needle", [
    (dict(best="orpo"), "must be one of the summaries shown"),
    (dict(best=["lora"]), "must be one of the summaries shown"),
    (dict(best="lora", unacceptable=["lora"]), "both best and unacceptable"),
    (dict(unacceptable=["base", "../../etc"]), "can be marked unacceptable"),
    (dict(unacceptable=[{"slot": "base"}]), "can be marked unacceptable"),
    (dict(unacceptable=["base"] * 50), "can be marked unacceptable"),
    (dict(own_summary="x" * (votes_mod.MAX_OWN_SUMMARY_CHARS + 1)), "the limit is"),
    (dict(own_summary=12), "must be text"),
])
def test_hostile_choices_are_refused_with_a_sentence_and_write_nothing(book, choice, needle):
    held = Votes.comparison(fake_result(), "d")
    answer = book.save(held, **choice)
    assert not answer["ok"] and needle in answer["message"], answer
    assert not preferences.data_path("test/votes").exists()


def test_a_slot_that_showed_no_summary_cannot_be_voted_on(book):
    held = Votes.comparison(fake_result({**TEXTS, "full": None}), "d")
    assert Votes.shown_slots(held) == ["base", "lora", "ppo"]
    assert "must be one of the summaries shown (Base (zero-shot), LoRA, PPO" in book.save(held, best="full")["message"]


def test_one_vote_per_comparison_and_identical_summaries_save_nothing(book):
    held = Votes.comparison(fake_result(), "d")
    assert book.save(held, best="lora")["ok"]
    again = book.save(held, best="base")
    assert not again["ok"] and "already voted on this comparison" in again["message"]
    assert len({r["vote_id"] for r in preferences.load_pairs("test/votes")}) == 1
    same = Votes.comparison(fake_result({s: "Same words." for s in SLOTS}), "d")
    answer = book.save(same, best="lora")
    assert not answer["ok"] and "prefers nothing" in answer["message"]
    assert book.save(same, best="lora", own_summary="Tom and Ann agree to play tennis.")["ok"]  # not claimed before


def test_own_summary_becomes_the_chosen_side_and_voter_names_are_cleaned(book):
    held = Votes.comparison(fake_result(), "d")
    answer = book.save(held, own_summary="  Tom invites Ann\x07 to tennis.\r\n", voter="ali\u202ece\x00 " + "x" * 500)
    assert answer["ok"] and answer["pairs"] == 4
    records = preferences.load_pairs("test/votes")
    assert {r["chosen"] for r in records} == {"Tom invites Ann to tennis."}
    assert {r["chosen_model"] for r in records} == {preferences.HUMAN}
    assert records[0]["voter"].startswith("alice x") and len(records[0]["voter"]) == votes_mod.MAX_VOTER_CHARS
    assert votes_mod.voter_name(None) == votes_mod.voter_name(" \x00 ") == votes_mod.voter_name(42) == "anonymous"


def test_stats_and_export_only_name_known_datasets(book):
    held = Votes.comparison(fake_result(), "d")
    book.save(held, best="full")
    stats = book.stats()
    assert stats.counts["votes"] == 1 and stats.counts["pairs"] == 3
    assert stats.win_rates.iloc[0]["model"] == "demo/full"
    for bad in ("../../etc/passwd", "other/name", ["test/votes"]):
        with pytest.raises(votes_mod.InputError, match="Unknown preference dataset"):
            book.stats(bad)
    with zipfile.ZipFile(book.export()) as archive:
        assert sorted(archive.namelist()) == ["README.md", "data/pairs.jsonl"]


def test_the_preferences_view_before_any_vote_says_so(book):
    from workbench.ui import preferences as view

    counts, _, figure, leaderboard, latest = view.render(book)
    assert "No votes in test/votes yet" in counts and leaderboard.empty and latest.empty
    assert "no votes yet" in figure.layout.annotations[0].text
    with pytest.raises(votes_mod.InputError, match="no preference pairs yet"):
        book.export()
    book.save(Votes.comparison(fake_result(), "<b>d</b>"), best="lora")
    counts, _, figure, leaderboard, latest = view.render(book)
    assert "1 vote by 1 voter on 1 dialogue, 3 preference pairs (3 from votes)" in counts
    assert list(leaderboard.columns) == view.LEADERBOARD_COLUMNS and leaderboard.iloc[0]["model"] == "demo/lora"
    assert [bar.x[0] for bar in figure.data][0] == "demo/lora" and latest.iloc[0]["best"] == "demo/lora"


def test_a_bad_dataset_name_fails_at_start(tmp_store):
    with pytest.raises(preferences.PreferenceError):
        Votes("../escape")


# ------------------------------------------------------------------------------------------------ through the app


wb, client = uf.app_fixtures("wb-votes", concurrency=8)


def compare(c, dialogue):
    return c.predict(dialogue, "", *COMPARE_DEFAULTS.values(), api_name="/compare")


def vote(c, best=None, unacceptable=(), own=""):
    return c.predict(best, list(unacceptable), own, api_name="/vote")


def test_vote_after_compare_through_the_api(wb, client):
    from gradio_client import Client

    fresh = Client(client.src, verbose=False)  # a new session: nothing compared yet
    assert vote(fresh, best="lora") == {"ok": False, "message": NOTHING_YET}
    result = compare(fresh, DIALOGUES[0][0])
    assert result["ok"]
    assert vote(fresh) == {"ok": False, "message": NOTHING_PICKED}
    answer = vote(fresh, best="lora", unacceptable=["ppo"])
    assert answer["ok"], answer
    records = [r for r in preferences.load_pairs(votes_mod.DEFAULT_DATASET) if r["vote_id"] == answer["vote_id"]]
    assert len(records) == answer["pairs"] >= 1
    served = {s: (e["model"], e["revision"], e["text"]) for s, e in result["models"].items()}
    for r in records:  # the outputs, models and revisions the server showed, not anything the client sent back
        for side in ("chosen", "rejected"):
            slot = r[f"{side}_slot"]
            assert (r[f"{side}_model"], r[f"{side}_revision"], r[side]) == served[slot]
        assert r["voter"] == "anonymous" and r["dialogue"] == DIALOGUES[0][0]
        assert json.loads(r["settings"])["max_new_tokens"] == 64 and r["prompt"] == result["prompt"]
    again = vote(fresh, best="base")
    assert not again["ok"] and "already voted" in again["message"]

    counts, _, _, leaderboard, latest = fresh.predict(votes_mod.DEFAULT_DATASET, api_name="/preferences")
    assert answer["vote_id"] in [row[-1] for row in latest["data"]]
    assert any(row[1] == result["models"]["lora"]["model"] for row in leaderboard["data"])
    exported = fresh.predict(votes_mod.DEFAULT_DATASET, api_name="/preferences_export")
    with zipfile.ZipFile(exported) as archive:
        lines = archive.read("data/pairs.jsonl").decode().splitlines()
    assert answer["vote_id"] in {json.loads(x)["vote_id"] for x in lines}


def test_hostile_vote_values_are_refused_by_the_api(wb, client):
    from gradio_client import Client

    c = Client(client.src, verbose=False)
    assert compare(c, DIALOGUES[1][0])["ok"]
    before = len(preferences.load_pairs(votes_mod.DEFAULT_DATASET))
    for best, unacceptable in (("<script>", []), ("lora", ["../x"])):
        with pytest.raises(Exception, match="not in the list of choices|not among the choices|choices"):
            vote(c, best=best, unacceptable=unacceptable)
    answer = vote(c, own="x" * (votes_mod.MAX_OWN_SUMMARY_CHARS + 1))
    assert not answer["ok"] and "the limit is" in answer["message"]
    assert len(preferences.load_pairs(votes_mod.DEFAULT_DATASET)) == before


def test_signed_in_voter_is_named_by_the_oauth_profile(wb):
    """On a Space gradio injects the signed-in user (the session's oauth_info) into a parameter annotated
    gr.OAuthProfile | None: the vote records its username; without a session the vote is anonymous."""
    from types import SimpleNamespace

    from gradio.helpers import special_args

    from workbench.ui import build_app

    book = Votes("test/oauth-votes")
    [fn] = [f.fn for f in build_app(wb.service, votes=book).fns.values() if f.api_name == "vote"]
    userinfo = {"preferred_username": "alice", "name": "Alice", "profile": "", "picture": ""}
    for request, voter in ((SimpleNamespace(session={"oauth_info": {"userinfo": userinfo}}), "alice"),
                           (SimpleNamespace(session={}), "anonymous"), (None, "anonymous")):
        inputs, *_ = special_args(fn, [Votes.comparison(fake_result(), "d"), "lora", [], ""], request)
        answer = fn(*inputs)
        assert answer["ok"], answer
        assert preferences.load_pairs("test/oauth-votes")[-1]["voter"] == voter


def test_sign_in_button_only_on_a_space_with_oauth(wb, monkeypatch):
    """Off a Space the app has no LoginButton (gradio would then need its OAuth extras and a session middleware, and
    on a Space without `hf_oauth` it would refuse to start); on a Space with OAuth enabled it has one."""
    from workbench.ui import build_app, compare as compare_tab

    for name in ("SYSTEM", "SPACE_ID", "OAUTH_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    assert not compare_tab.oauth_available() and not build_app(wb.service).expects_oauth
    monkeypatch.setenv("SYSTEM", "spaces")  # what a Space sets; gradio.utils.get_space() reads it
    monkeypatch.setenv("SPACE_ID", "you/workbench")
    assert not compare_tab.oauth_available()  # a Space without hf_oauth: anonymous votes
    monkeypatch.setenv("OAUTH_CLIENT_ID", "client-id")
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("authlib", "itsdangerous")
                        else real_find_spec(name, *a))
    assert not compare_tab.oauth_available()  # OAuth on, but gradio's OAuth extras missing: anonymous, no crash
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name in ("authlib", "itsdangerous")
                        else real_find_spec(name, *a))
    assert compare_tab.oauth_available()  # (a LoginButton cannot be built off a Space without a Hub login)


def test_twenty_concurrent_voters_ten_votes_each_lose_and_duplicate_nothing(wb, client, monkeypatch):
    """20 sessions at once, each comparing a dialogue and voting on it, 10 times: exactly 200 votes on disk, each
    with the pairs its request reported, readable by datasets.load_dataset. What is under test is the vote path
    (session state, concurrent durable appends), not generation speed: the models answer at once here with a
    distinct summary per slot and prompt, and every other step of Compare runs as served."""
    import datasets
    from gradio_client import Client

    from workbench.modelset import Summary

    def instant(prompts_by_slot, *args, **kwargs):
        return {s: Summary(s, f"{s} says: {p[-40:]}", 0.0) for s, p in prompts_by_slot.items()}

    monkeypatch.setattr(wb.models, "summarize", instant)

    name = votes_mod.DEFAULT_DATASET
    before = {r["vote_id"] for r in preferences.load_pairs(name)}
    dialogues = [d for d, _ in DIALOGUES] + uf.DIALOGUES_EXTRA

    def voter(v: int) -> list[dict]:
        c, answers = Client(client.src, verbose=False), []
        for k in range(10):
            assert compare(c, dialogues[(v + k) % len(dialogues)])["ok"]
            slot = SLOTS[(v + k) % len(SLOTS)]
            unacceptable = [SLOTS[(v + k + 1) % len(SLOTS)]] if k % 2 else []
            answers.append(vote(c, best=slot, unacceptable=unacceptable, own=f"Voter {v} writes summary {k}."))
        return answers

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = [a for batch in pool.map(voter, range(20)) for a in batch]
    assert [a for a in answers if not a["ok"]] == []
    saved = {a["vote_id"]: a["pairs"] for a in answers}
    assert len(answers) == len(saved) == 200

    records = [r for r in preferences.load_pairs(name) if r["vote_id"] not in before]
    by_vote: dict[str, list[int]] = {}
    for r in records:
        by_vote.setdefault(r["vote_id"], []).append(r["pair_index"])
    assert {v: sorted(ix) for v, ix in by_vote.items()} == {v: list(range(n)) for v, n in saved.items()}
    loaded = datasets.load_dataset("json", data_files=str(preferences.data_path(name)), split="train")
    assert len(loaded) == len(records) + sum(1 for r in preferences.load_pairs(name) if r["vote_id"] in before)
    assert len(set(loaded["vote_id"]) - before) == len(saved)
    card = (Path(preferences.dataset_dir(name)) / "README.md").read_text()
    assert f"from {len(before) + len(saved)} votes" in card


# ------------------------------------------------------------------------------------------------ owner's push


def test_only_the_space_owner_may_push_the_votes_and_no_token_is_shown(book, monkeypatch, caplog):
    from types import SimpleNamespace

    from workbench import store
    from workbench.ui import preferences as view

    pushed = []
    monkeypatch.setattr(preferences, "push_to_hub", lambda name, repo, **kw: pushed.append((name, repo)) or "c0ffee")
    monkeypatch.delenv("SPACE_AUTHOR_NAME", raising=False)
    assert not votes_mod.may_push("anyone") and not votes_mod.may_push(None)  # a local run: the CLI pushes
    assert book.push("test/votes", "owner/votes", "anyone") == {"ok": False, "message": votes_mod.OWNER_ONLY}
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    assert votes_mod.may_push("owner") and not votes_mod.may_push("someone") and not votes_mod.may_push(None)
    assert not view.owner_controls(None).visible and not view.owner_controls(SimpleNamespace(username="Owner")).visible
    assert view.owner_controls(SimpleNamespace(username="owner")).visible
    assert not book.push("test/votes", "owner/votes", "someone")["ok"] and pushed == []
    assert book.push_repo() == "owner/votes"
    answer = book.push(None, "owner/votes", "owner")
    assert answer["ok"] and pushed == [("test/votes", "owner/votes")] and "owner/votes" in answer["message"]
    bad = book.push("test/votes", "not a repo", "owner")
    assert not bad["ok"] and "not a valid repo id" in bad["message"] and len(pushed) == 1
    secret = "hf_" + "A1b2C3d4" * 4
    monkeypatch.setenv("HF_TOKEN", secret)

    def failing(name, repo, **kw):
        raise store.StoreError(f"push to {repo} failed: 401 Unauthorized for token {secret}\nTraceback ...")

    monkeypatch.setattr(preferences, "push_to_hub", failing)
    with caplog.at_level("ERROR"):
        failed = book.push("test/votes", "owner/votes", "owner")
    assert not failed["ok"] and "401 Unauthorized" in failed["message"] and "\n" not in failed["message"]
    assert secret not in failed["message"] + caplog.text and secret[3:] not in failed["message"] + caplog.text


def test_the_push_button_is_not_in_a_local_app(wb, monkeypatch):
    from workbench.ui import build_app

    for name in ("SYSTEM", "SPACE_ID", "OAUTH_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")  # even with an owner named: no Space with OAuth, no button
    ids = {getattr(b, "elem_id", None) for b in build_app(wb.service).blocks.values()}
    assert "prefs-export" in ids and not {"prefs-push", "prefs-push-button"} & ids
    from workbench.ui import preferences as view

    monkeypatch.setattr(view, "oauth_available", lambda: True)  # a Space with OAuth: there, hidden until the owner
    blocks = {getattr(b, "elem_id", None): b for b in build_app(wb.service).blocks.values()}
    assert "prefs-push-button" in blocks and blocks["prefs-push"].visible is False
