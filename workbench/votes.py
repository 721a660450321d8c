"""Votes from the Compare tab, checked and handed to `workbench.preferences` (no gradio here).

    votes = Votes()                                   # dataset: $WORKBENCH_VOTES or local/votes in the local store
    held = votes.comparison(result, dialogue)         # after a Compare (a CompareResult): what a vote may refer to
    answer = votes.save(held, best="lora", unacceptable=["ppo"], own_summary="", voter=None)
    stats = votes.stats()                             # counts, win rates, leaderboard, latest votes

Why the app keeps `held` on the server (gr.State) instead of reading the shown summaries back from the page: a vote
names models, revisions and outputs, and a client must not be able to forge them. A comparison takes one vote: a
second press of "Save vote" (a double click, a retried request) is answered, not recorded twice.

Every answer is a plain dict `{"ok", "message", ...}` whose message is a sentence meant for the user.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections import OrderedDict

from workbench import preferences, store
from workbench.inputs import MAX_DIALOGUE_CHARS, MAX_REFERENCE_CHARS, InputError, clean_text
from workbench.modelset import LABELS

log = logging.getLogger(__name__)

DEFAULT_DATASET = "local/votes"
MAX_OWN_SUMMARY_CHARS = MAX_REFERENCE_CHARS
MAX_VOTER_CHARS = 100
ANONYMOUS = "anonymous"
MAX_REMEMBERED = 100_000  # comparison ids remembered as voted on (a few MB at most)

NOTHING_YET = "Nothing to vote on yet: run Compare first, then pick the best summary."
NOTHING_PICKED = ("Pick the best summary or write a better one of your own (or mark the unacceptable ones), then "
                  "press Save vote.")


def default_dataset() -> str:
    """The votes dataset of this app: $WORKBENCH_VOTES (a namespace/name in the local store) or local/votes."""
    return (os.environ.get("WORKBENCH_VOTES") or DEFAULT_DATASET).strip()


def voter_name(username) -> str:
    """The voter recorded with a vote: the signed-in Hugging Face user name on a Space, else 'anonymous'."""
    if not isinstance(username, str):
        return ANONYMOUS
    try:
        name = clean_text(username[: MAX_VOTER_CHARS * 4], field="user name", limit=MAX_VOTER_CHARS * 4,
                          required=False)
    except InputError:
        return ANONYMOUS
    return " ".join(name.split())[:MAX_VOTER_CHARS] or ANONYMOUS


OWNER_ONLY = "Only the owner of this Space, signed in with Hugging Face, may push the votes to the Hub."
_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def space_owner() -> str | None:
    """The Space's owner (Spaces set SPACE_AUTHOR_NAME); None when the app does not run on a Space."""
    return (os.environ.get("SPACE_AUTHOR_NAME") or "").strip() or None


def may_push(username) -> bool:
    """Whether the signed-in user may push the votes to the Hub: only the owner of the Space the app runs on
    (a user name from HF OAuth, compared with SPACE_AUTHOR_NAME). Off a Space nobody may from the app: there the
    command line does it (`python -m workbench.preferences push`)."""
    owner = space_owner()
    return owner is not None and isinstance(username, str) and username == owner


def _scrubbed(text: str) -> str:
    """`text` without anything that looks like a Hugging Face token (never shown or logged)."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    return _TOKEN.sub("hf_***", text)


def label(slot: str, held: dict | None = None) -> str:
    """What the app called the slot when it showed it (the models config's label), else the standard label."""
    return ((held or {}).get("labels") or {}).get(slot) or LABELS.get(slot, slot)


def _refusal(message: str) -> dict:
    return {"ok": False, "message": message}


class Votes:
    """One app's votes: where they go, which comparisons were already voted on, and the Preferences view's data."""

    def __init__(self, dataset: str | None = None):
        self.dataset = dataset or default_dataset()
        preferences.dataset_dir(self.dataset)  # a bad name fails at start, not at the first vote
        self._voted: OrderedDict[str, str] = OrderedDict()  # comparison id -> vote id ("" while being saved)
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------------------- compare -> vote

    @staticmethod
    def comparison(result, dialogue) -> dict | None:
        """What a vote on this Compare result (a workbench.app_service.CompareResult) may refer to: the prompt, the
        settings and every shown output with its model, revision and label; None when the Compare showed no summary
        (refused input, no model available)."""
        if not getattr(result, "ok", False) or not isinstance(getattr(result, "models", None), dict):
            return None
        outputs = [e for e in result.models.values() if e.available and isinstance(e.text, str) and e.model]
        shown = {e.slot: {"model_id": e.model, "revision": str(e.revision or ""), "summary": e.text}
                 for e in outputs}
        if not shown:
            return None
        try:
            dialogue = clean_text(dialogue, field="The dialogue", limit=MAX_DIALOGUE_CHARS)
        except InputError:
            return None
        settings = dict(result.settings or {})
        if result.seed is not None:
            settings["seed"] = result.seed
        return {"id": uuid.uuid4().hex, "dialogue": dialogue, "prompt": str(result.prompt or ""),
                "settings": settings, "outputs": shown, "labels": {e.slot: e.label for e in outputs}}

    @staticmethod
    def shown_slots(held: dict | None) -> list[str]:
        return list((held or {}).get("outputs") or {})

    def _choices(self, held: dict, best, unacceptable, own_summary) -> tuple[str | None, list[str], str]:
        """(best, unacceptable, own summary) checked against what was shown; InputError with a sentence otherwise."""
        shown = self.shown_slots(held)
        names = ", ".join(label(s, held) for s in shown)
        best = best if best not in ("", None) else None
        if best is not None and (not isinstance(best, str) or best not in shown):
            raise InputError(f"The best summary must be one of the summaries shown ({names}).")
        if unacceptable is None or unacceptable == "":
            unacceptable = []
        if isinstance(unacceptable, str):
            unacceptable = [unacceptable]
        if not isinstance(unacceptable, (list, tuple)) or len(unacceptable) > len(shown) or \
                any(not isinstance(u, str) or u not in shown for u in unacceptable):
            raise InputError(f"Only the summaries shown ({names}) can be marked unacceptable.")
        unacceptable = list(dict.fromkeys(unacceptable))
        if best is not None and best in unacceptable:
            raise InputError(f"{label(best, held)} is marked both best and unacceptable; untick one of them.")
        if best is not None and not held["outputs"][best]["summary"].strip():
            raise InputError(f"{label(best, held)} wrote an empty summary; mark it unacceptable or write your own.")
        own = clean_text(own_summary, field="Your summary", limit=MAX_OWN_SUMMARY_CHARS, required=False)
        if best is None and not unacceptable and not own:
            raise InputError(NOTHING_PICKED)
        return best, unacceptable, own

    def _claim(self, comparison_id: str) -> str | None:
        """Mark a comparison as being voted on; the vote id already saved for it (or '' while saving), if any."""
        with self._lock:
            if comparison_id in self._voted:
                return self._voted[comparison_id]
            self._voted[comparison_id] = ""
            while len(self._voted) > MAX_REMEMBERED:
                self._voted.popitem(last=False)
            return None

    def _settle(self, comparison_id: str, vote_id: str | None) -> None:
        with self._lock:
            if vote_id is None:
                self._voted.pop(comparison_id, None)
            else:
                self._voted[comparison_id] = vote_id

    def save(self, held: dict | None, *, best=None, unacceptable=(), own_summary="", voter=None) -> dict:
        """Record one vote on the comparison `held` (from `comparison`); on disk when this returns with ok=True.
        Returns {"ok", "message", "vote_id", "pairs", "dataset"}."""
        if not isinstance(held, dict) or not held.get("outputs"):
            return _refusal(NOTHING_YET)
        try:
            best, unacceptable, own = self._choices(held, best, unacceptable, own_summary)
        except InputError as err:
            return _refusal(str(err))
        previous = self._claim(held["id"])
        if previous is not None:
            return _refusal("You already voted on this comparison; run Compare again to vote on another."
                            if previous else "This vote is being saved already.")
        try:
            outputs = {s: (o["model_id"], o["revision"], o["summary"]) for s, o in held["outputs"].items()}
            records = preferences.record_vote(self.dataset, dialogue=held["dialogue"], prompt=held["prompt"],
                                              outputs=outputs, best=best, unacceptable=unacceptable,
                                              own_summary=own or None, settings=held.get("settings"),
                                              voter=voter_name(voter))
        except (preferences.PreferenceError, OSError) as err:
            self._settle(held["id"], None)
            log.error("vote not saved: %s", err)
            return _refusal(f"The vote could not be saved ({str(err)[:200]}); try again.")
        if not records:
            self._settle(held["id"], None)
            return _refusal("This vote prefers nothing: the summaries it compares are identical, so nothing was "
                            "saved. Write your own summary or compare another dialogue.")
        vote_id = records[0]["vote_id"]
        self._settle(held["id"], vote_id)
        return {"ok": True, "message": self._thanks(held, best, unacceptable, own, len(records)), "vote_id": vote_id,
                "pairs": len(records), "dataset": self.dataset}

    def _thanks(self, held: dict, best, unacceptable, own, n_pairs: int) -> str:
        parts = [f"{label(best, held)} is the best"] if best else []
        if own:
            parts.append("your summary beats every shown one")
        if unacceptable:
            parts.append(f"unacceptable: {', '.join(label(u, held) for u in unacceptable)}")
        return (f"Vote saved: {'; '.join(parts)}. {n_pairs} preference pair{'s' if n_pairs != 1 else ''} added to "
                f"{self.dataset}; see the Preferences tab.")

    # -------------------------------------------------------------------------------------------- Preferences view

    def datasets(self) -> list[str]:
        """The votes dataset first, then the other preference datasets in the store (e.g. automatic pairs)."""
        return list(dict.fromkeys([self.dataset, *preferences.list_datasets()]))

    def checked_dataset(self, name) -> str:
        if name in (None, ""):
            return self.dataset
        if not isinstance(name, str) or name not in self.datasets():
            raise InputError(f"Unknown preference dataset {str(name)[:60]!r}; choose one from the list.")
        return name

    def stats(self, name=None, *, n_boot: int = 200) -> preferences.PreferenceStats:
        return preferences.summarize(self.checked_dataset(name), n_boot=n_boot)

    def push_repo(self) -> str:
        """The Hub dataset repo the owner's button offers: <owner>/<the votes dataset's name>."""
        return f"{space_owner() or 'you'}/{self.dataset.split('/')[-1]}"

    def push(self, name, repo_id, username) -> dict:
        """Push a preference dataset to the Hub as a dataset repo, for the Space owner only (`may_push`); the token
        is the Space's HF_TOKEN secret (or the machine's login), never shown. Errors come back as one sentence."""
        if not may_push(username):
            return _refusal(OWNER_ONLY)
        try:
            name = self.checked_dataset(name)
            repo_id = store.validate_repo_id(clean_text(repo_id, field="The Hub repo", limit=200))
        except (InputError, store.StoreError) as err:
            return _refusal(_scrubbed(str(err).splitlines()[0] if str(err) else type(err).__name__))
        try:
            where = preferences.push_to_hub(name, repo_id)
        except (preferences.PreferenceError, store.StoreError, OSError) as err:
            line = _scrubbed(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
            log.error("push of %s to %s failed: %s", name, repo_id, line)
            return _refusal(f"The push to {repo_id} failed: {line[:300]}")
        return {"ok": True, "message": f"Pushed {name} to the Hub dataset repo {repo_id} ({_scrubbed(where)}).",
                "repo_id": repo_id}

    def export(self, name=None):
        """A .zip of the dataset repo (card + data) in a new temporary folder."""
        try:
            return preferences.export(self.checked_dataset(name))
        except preferences.PreferenceError as err:
            raise InputError(str(err)) from None
