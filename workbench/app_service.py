"""Request handling for the workbench app, independent of any UI toolkit (no gradio import here).

`WorkbenchService` wraps one loaded `ModelSet` and answers the app's requests with plain dicts and DataFrames:

    compare(dialogue, reference, ...)      the four models side by side: text, latency, toxicity, ROUGE, word overlap
    prompt(dialogue, reference, shots...)  zero/one/few-shot prompting of the base model, with the exact prompt
    score(text)                            toxicity of any text
    toxicity_sample(n, seed, dataset)      every available model over a seeded sample of test dialogues
    dashboard(dataset)                     the measured runs in results/ and the served models' metrics.json

Every input is cleaned here (control characters removed, hard length limits, empty input refused before any model
call) so that the UI layer only wires components to these methods. User mistakes come back as `{"ok": False,
"message": ...}`; nothing a user types is ever a file path or a model id (datasets are a fixed list).
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench import data, paths, prompts
from workbench.generation import GenerationSettings, count_tokens
from workbench.modelset import LABELS, SLOTS, ModelSet

# ------------------------------------------------------------------------------------------------ limits

MAX_DIALOGUE_CHARS = 20_000
MAX_REFERENCE_CHARS = 5_000
MAX_SCORE_CHARS = 20_000
MAX_SHOTS_CHARS = 20_000
MAX_SHOTS = 3
SAMPLE_RANGE = (1, 200)
SAMPLE_DEFAULT = 20
SEED_MAX = 2**31 - 1
DECODING = ("greedy", "beam search", "sampling")
GEN_RANGES = {
    "max_new_tokens": (1, 256),
    "num_beams": (1, 8),
    "temperature": (0.05, 2.0),
    "top_p": (0.05, 1.0),
}
DATASET_SPLITS = {  # dataset choice -> (split of target dialogues, split the in-context shots come from)
    data.DEMO: ("test", "train"),
    data.SHARED: ("test", "validation"),
}
ROUGE_SHOWN = ("rouge1", "rouge2", "rougeL")
REFERENCE_SEPARATOR = "---"
SHOT_SEPARATOR = "==="
METHOD_ORDER = ("base", "full", "lora", "ppo")
METHOD_LABELS = dict(LABELS)

# The reference recipe's published ROUGE-1 on DialogSum (DeepLearning.AI/AWS "Generative AI with LLMs", lab 2
# notebook). Never mixed into measured-run charts.
PUBLISHED_REFERENCE = [
    {"model": "Base FLAN-T5 (zero-shot)", "rouge1": 0.233},
    {"model": "Full fine-tune", "rouge1": 0.422},
    {"model": "LoRA (PEFT)", "rouge1": 0.408},
]
PUBLISHED_SOURCE = ('DeepLearning.AI / AWS "Generative AI with Large Language Models", lab 2 notebook: ROUGE-1 on '
                    "DialogSum from a pre-computed CSV (not measured by this workbench)")

# control characters (newline and tab stay), bidi overrides/isolates, BOM, lone surrogates, non-characters
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff"
                      "\ufffe\uffff]")
RELOAD_MIN_INTERVAL_S = 30.0  # "Refresh models" re-reads every model: at most this often, whoever asks


class InputError(ValueError):
    """A problem with what the user typed; the message is shown to them as is."""


# ------------------------------------------------------------------------------------------------ input cleaning


def clean_text(text, *, field: str, limit: int, required: bool = True) -> str:
    """Normalise newlines, drop control characters (newline and tab stay), enforce the length limit.

    Raises InputError for text over `limit` characters, and for empty/whitespace text when `required`.
    """
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(f"{field} must be text")
    if len(text) > limit:
        raise InputError(f"{field} is {len(text):,} characters long; the limit is {limit:,}. Shorten it and retry.")
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if required and not text:
        raise InputError(f"{field} is empty: type or paste some text, or pick an example.")
    return text


def parse_references(text: str) -> list[str]:
    """Several references are separated by a line holding only `---`."""
    parts = re.split(rf"(?m)^\s*{re.escape(REFERENCE_SEPARATOR)}\s*$", text or "")
    return [p.strip() for p in parts if p.strip()]


def join_references(references: Sequence[str]) -> str:
    return f"\n{REFERENCE_SEPARATOR}\n".join(references)


def parse_shots(text: str) -> list[tuple[str, str]]:
    """Typed shots: blocks separated by a line `===`; in each block the line starting `Summary:` and what follows
    is the summary, the lines before it the dialogue."""
    shots = []
    blocks = [b for b in re.split(rf"(?m)^\s*{re.escape(SHOT_SEPARATOR)}\s*$", text or "") if b.strip()]
    for i, block in enumerate(blocks, 1):
        match = re.search(r"(?mi)^\s*summary\s*:", block)
        if not match:
            raise InputError(f"typed shot {i} has no 'Summary:' line (format: dialogue lines, then 'Summary: ...'; "
                             f"separate shots with a line '{SHOT_SEPARATOR}')")
        dialogue, summary = block[: match.start()].strip(), block[match.end():].strip()
        if not dialogue or not summary:
            raise InputError(f"typed shot {i} needs both a dialogue and a summary")
        shots.append((dialogue, summary))
    if len(shots) > MAX_SHOTS:
        raise InputError(f"{len(shots)} typed shots; at most {MAX_SHOTS} are allowed")
    return shots


def _shown(value, limit: int = 40) -> str:
    """A user's value quoted back in a message, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value, name: str, low: float, high: float, *, integer: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name} must be a number (got {_shown(value)})") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise InputError(f"{name} must be between {low:g} and {high:g} (got {_shown(value)})")
    if integer:
        if number != int(number):
            raise InputError(f"{name} must be a whole number (got {_shown(value)})")
        return int(number)
    return number


def generation_settings(decoding: str = "greedy", max_new_tokens=64, num_beams=4, temperature=0.7,
                        top_p=0.9) -> GenerationSettings:
    """Bounded decoding settings from UI/API values; greedy unless asked otherwise."""
    if decoding not in DECODING:
        raise InputError(f"decoding must be one of: {', '.join(DECODING)} (got {_shown(decoding)})")
    limits = {k: _number(v, k, *GEN_RANGES[k], integer=k in ("max_new_tokens", "num_beams"))
              for k, v in dict(max_new_tokens=max_new_tokens, num_beams=num_beams, temperature=temperature,
                               top_p=top_p).items()}
    if decoding == "greedy":
        return GenerationSettings(max_new_tokens=limits["max_new_tokens"])
    if decoding == "beam search":
        return GenerationSettings(max_new_tokens=limits["max_new_tokens"], num_beams=max(2, limits["num_beams"]))
    return GenerationSettings(max_new_tokens=limits["max_new_tokens"], do_sample=True,
                              temperature=limits["temperature"], top_p=limits["top_p"], top_k=0)


def fitting_prefix(tokenizer, text: str, limit: int, build: Callable[[str], str] = lambda s: s) -> int:
    """The longest prefix length of `text` (in characters) for which `build(prefix)` has at most `limit` tokens."""
    if count_tokens(tokenizer, build(text)) <= limit:
        return len(text)
    low, high = 0, len(text)  # build(text[:low]) fits (or low == 0), build(text[:high]) does not
    while high - low > 1:
        mid = (low + high) // 2
        if count_tokens(tokenizer, build(text[:mid])) <= limit:
            low = mid
        else:
            high = mid
    return low


def fit_dialogue(tokenizer, dialogue: str, limit: int, build: Callable[[str], str] = prompts.zero_shot):
    """Cut the dialogue (at a word boundary) so that the whole prompt, instruction and cue included, fits `limit`.

    Returns (dialogue kept, prompt tokens before, prompt tokens after). Cutting the dialogue rather than letting the
    tokenizer cut the prompt keeps the trailing "Summary:" cue the models were trained to answer.
    """
    before = count_tokens(tokenizer, build(dialogue))
    if before <= limit:
        return dialogue, before, before
    keep = fitting_prefix(tokenizer, dialogue, limit, build)
    cut = dialogue[:keep]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > keep * 0.8:
        cut = cut[:space]
    cut = cut.rstrip()
    return cut, before, count_tokens(tokenizer, build(cut))


# ------------------------------------------------------------------------------------------------ service


@dataclass
class DashboardData:
    message: str
    datasets: list[str]
    dataset: str | None
    runs: pd.DataFrame
    rouge: pd.DataFrame
    improvement: pd.DataFrame
    params: pd.DataFrame
    base_rouge1: float | None
    toxicity: pd.DataFrame
    toxicity_note: str
    curves: pd.DataFrame
    reference: pd.DataFrame


class WorkbenchService:
    """Everything the app does, as plain Python: one instance per process, shared by all requests."""

    def __init__(self, modelset: ModelSet, *, results_dir: str | Path | None = None):
        self.models = modelset
        self._results_dir = Path(results_dir) if results_dir else None
        self._rows: dict[tuple[str, str], list[dict]] = {}
        self._rows_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._last_reload = float("-inf")

    @property
    def results_dir(self) -> Path:
        return self._results_dir or paths.RESULTS_DIR

    # -------------------------------------------------------------------------------------------- models

    def status(self) -> list[dict]:
        """One plain row per slot: slot, label, ok, model, revision, error, family (which of the config's families
        serves it, e.g. "fallback: demo/flan-t5-demo-base family") and note (why a fallback serves)."""
        ms = self.models
        rows = [{"slot": s, "label": LABELS[s], "ok": st.ok, "model": st.ref, "revision": st.revision,
                 "error": st.error, "family": st.family_label, "note": st.note}
                for s, st in ((s, ms.status[s]) for s in SLOTS)]
        return rows

    def status_summary(self) -> dict:
        ms = self.models
        return {"slots": self.status(), "load_seconds": round(ms.load_seconds, 2),
                "scorer": getattr(ms.scorer, "name", None), "scorer_error": ms.scorer_error,
                "scorer_note": ms.scorer_note, "max_input_tokens": ms.max_input_tokens, "dtype": str(ms.precision),
                "precision_note": precision_note(ms.precision, self.results_dir), "device": str(ms.device)}

    def scorer_notice(self) -> str:
        """What the Toxicity tab says about its scorer: empty when the configured one serves."""
        ms = self.models
        if ms.scorer is None:
            return f"No toxicity scorer is available: {ms.scorer_error}"
        if ms.scorer_note:
            return f"Toxicity is scored by the fallback scorer: {ms.scorer_note}."
        return ""

    def reload(self) -> dict:
        """Re-read every slot (new revisions, a Hub that came back). On a public Space anyone can press the button,
        so a reload within RELOAD_MIN_INTERVAL_S of the last one (or while one runs) only reports the status."""
        if not self._reload_lock.acquire(blocking=False):
            return {**self.status_summary(), "notice": "a reload is already running"}
        try:
            wait = self._last_reload + RELOAD_MIN_INTERVAL_S - time.monotonic()
            if wait > 0:
                return {**self.status_summary(), "notice": f"the models were reloaded just now; try again in "
                                                           f"{math.ceil(wait)} s"}
            self.models.reload()
            self._last_reload = time.monotonic()
            return self.status_summary()
        finally:
            self._reload_lock.release()

    # -------------------------------------------------------------------------------------------- data

    def datasets(self) -> list[str]:
        """The dataset choices that exist on this machine (a fixed list; users never give paths)."""
        return data.available({name: split for name, (split, _) in DATASET_SPLITS.items()})

    def rows(self, dataset: str, split: str) -> list[dict]:
        if not isinstance(dataset, str) or dataset not in DATASET_SPLITS:
            raise InputError(f"unknown dataset {_shown(dataset)}; choose one of: {', '.join(DATASET_SPLITS)}")
        key = (dataset, split)
        with self._rows_lock:
            if key not in self._rows:
                try:
                    self._rows[key] = data.load_dialogues(dataset, split)
                except (data.DataError, OSError) as err:
                    raise InputError(f"dataset {dataset} ({split}) is not available: {err}") from None
            return self._rows[key]

    def example_choices(self, dataset: str) -> list[tuple[str, str]]:
        """(label, id) pairs for the dataset's test dialogues."""
        rows = self.rows(dataset, DATASET_SPLITS[dataset][0]) if dataset in DATASET_SPLITS else []
        return [(f"{r['fname']} · {r['topic']}" if r["topic"] else r["fname"], r["fname"]) for r in rows]

    def example(self, dataset: str, example_id: str) -> dict:
        """The test row with that id: dialogue, summary, references, topic, fname."""
        for row in self.rows(dataset, DATASET_SPLITS.get(dataset, ("test",))[0]):
            if row["fname"] == example_id:
                return row
        raise InputError(f"no example {_shown(example_id)} in {dataset}")

    def example_fields(self, dataset: str, example_id: str) -> dict:
        """What the UI fills in when an example is picked: the dialogue and its reference(s)."""
        row = self.example(dataset, example_id)
        return {"dialogue": row["dialogue"], "reference": join_references(row["references"]),
                "topic": row["topic"], "fname": row["fname"]}

    # -------------------------------------------------------------------------------------------- compare

    def compare(self, dialogue: str, reference: str = "", *, decoding: str = "greedy", max_new_tokens=64,
                num_beams=4, temperature=0.7, top_p=0.9, seed=0) -> dict:
        """The four models on one dialogue with the instruction prompt; one mixed-adapter call + the full model."""
        try:
            dialogue = clean_text(dialogue, field="The dialogue", limit=MAX_DIALOGUE_CHARS)
            references = parse_references(clean_text(reference, field="The reference", limit=MAX_REFERENCE_CHARS,
                                                     required=False))
            settings = generation_settings(decoding, max_new_tokens, num_beams, temperature, top_p)
            seed = _number(seed, "seed", 0, SEED_MAX, integer=True)
        except InputError as err:
            return _refusal(err)
        ms = self.models
        if not ms.available:
            return _refusal("no model is available: " + "; ".join(s.describe() for s in ms.status.values()))
        notices = []
        tokenizer = ms.tokenizer or ms.full_tokenizer
        limit = ms.max_input_tokens
        kept, before, after = fit_dialogue(tokenizer, dialogue, limit)
        if kept != dialogue:
            notices.append(f"The dialogue is {before:,} tokens with the prompt; the models read at most {limit}, so it "
                           f"was truncated to its first {len(kept):,} of {len(dialogue):,} characters.")
        prompt = prompts.zero_shot(kept)
        started = time.time()
        summaries = ms.summarize({s: prompt for s in SLOTS}, settings, seed=seed if settings.do_sample else None)
        wall = time.time() - started
        texts = {s: r.text for s, r in summaries.items() if r.text is not None}
        tox = self._toxicity(list(texts.values()))
        tox_by_slot = dict(zip(texts, tox)) if tox is not None else {}
        if tox is None and ms.scorer_error:
            notices.append(f"Toxicity scorer unavailable: {ms.scorer_error}")
        rouge = self._rouge(list(texts.values()), references) if references else None
        rouge_by_slot = dict(zip(texts, rouge)) if rouge else {}
        shared = {s for group in ms.call_groups(list(texts)) if len(group) > 1 for s in group}
        models = {}
        for slot in SLOTS:
            r, st = summaries[slot], ms.status[slot]
            entry = {"label": LABELS[slot], "model": st.ref, "revision": st.revision, "available": r.text is not None,
                     "family": st.family_label, "note": st.note, "text": r.text, "error": r.error,
                     "latency_s": round(r.seconds, 3) if r.text is not None else None, "shared_call": slot in shared,
                     "toxicity": _round(tox_by_slot.get(slot)), "rouge": None, "overlap": None}
            if slot in rouge_by_slot:
                entry["rouge"] = {k: round(rouge_by_slot[slot][k], 4) for k in ROUGE_SHOWN}
                entry["overlap"] = _overlap(r.text, references[0])
            models[slot] = entry
        return {"ok": True, "message": " ".join(notices), "notices": notices, "truncated": kept != dialogue,
                "input_tokens": after, "input_tokens_before_truncation": before, "max_input_tokens": limit,
                "prompt": prompt, "references": references, "settings": settings.as_dict(),
                "seed": seed if settings.do_sample else None, "wall_time_s": round(wall, 3),
                "scorer": getattr(ms.scorer, "name", None), "models": models}

    def _toxicity(self, texts: list[str]) -> list[float] | None:
        if not texts:
            return []
        try:
            return self.models.score(texts)
        except Exception:  # noqa: BLE001 - a broken scorer must not take the summaries down with it
            return None

    @staticmethod
    def _rouge(predictions: list[str], references: list[str]) -> list[dict]:
        from workbench import scoring

        return scoring.rouge_per_example(predictions, [references] * len(predictions))

    # -------------------------------------------------------------------------------------------- prompting

    def prompt(self, dialogue: str, reference: str = "", *, shots=0, shot_source: str = "dataset", shot_seed=0,
               custom_shots: str = "", dataset: str = data.DEMO, max_new_tokens=64) -> dict:
        """Zero/one/few-shot prompting of the base model. Shows the exact prompt and whether it gets truncated."""
        try:
            dialogue = clean_text(dialogue, field="The dialogue", limit=MAX_DIALOGUE_CHARS)
            references = parse_references(clean_text(reference, field="The reference", limit=MAX_REFERENCE_CHARS,
                                                     required=False))
            n_shots = _number(shots, "shots", 0, MAX_SHOTS, integer=True)
            settings = generation_settings("greedy", max_new_tokens)
            if shot_source == "typed":
                typed = clean_text(custom_shots, field="The typed shots", limit=MAX_SHOTS_CHARS, required=False)
                shot_pairs = parse_shots(typed)
                shot_info = [{"fname": f"typed-{i}", "dialogue": d, "summary": s}
                             for i, (d, s) in enumerate(shot_pairs, 1)]
            elif shot_source == "dataset":
                seed = _number(shot_seed, "shot seed", 0, SEED_MAX, integer=True)
                shot_info = self.draw_shots(dataset, n_shots, seed, exclude=dialogue)
                shot_pairs = [(r["dialogue"], r["summary"]) for r in shot_info]
            else:
                raise InputError(f"shot source must be 'dataset' or 'typed' (got {_shown(shot_source)})")
        except InputError as err:
            return _refusal(err)
        ms = self.models
        if not ms.status["base"].ok:
            return _refusal(f"the base model is unavailable: {ms.status['base'].error}")
        text = prompts.few_shot(dialogue, shot_pairs) if shot_pairs else prompts.zero_shot(dialogue)
        style = "blocks" if shot_pairs else "instruction"
        limit = ms.max_input_tokens
        n_tokens = count_tokens(ms.tokenizer, text)
        notices, dropped = [], ""
        if n_tokens > limit:
            dropped = text[fitting_prefix(ms.tokenizer, text, limit):]
            notices.append(f"The prompt is {n_tokens:,} tokens but the model reads at most {limit}: the last "
                           f"{n_tokens - limit:,} tokens (the end of the target dialogue and the cue) are cut off, so "
                           "the output is unreliable. Use fewer or shorter shots.")
        [summary] = ms.summarize({"base": text}, settings).values()
        if summary.text is None:
            return _refusal(f"the base model failed: {summary.error}")
        tox = self._toxicity([summary.text])
        rouge = self._rouge([summary.text], references)[0] if references else None
        return {"ok": True, "message": " ".join(notices), "notices": notices, "prompt": text, "style": style,
                "shots": shot_info, "prompt_tokens": n_tokens, "max_input_tokens": limit,
                "truncated": n_tokens > limit, "dropped_text": dropped, "output": summary.text,
                "latency_s": round(summary.seconds, 3), "toxicity": _round(tox[0]) if tox else None,
                "rouge": {k: round(rouge[k], 4) for k in ROUGE_SHOWN} if rouge else None,
                "overlap": _overlap(summary.text, references[0]) if references else None,
                "references": references, "model": ms.status["base"].ref}

    def draw_shots(self, dataset: str, n: int, seed: int, exclude: str = "") -> list[dict]:
        """`n` seeded examples from the dataset's train/validation split, never the target dialogue itself.

        Drawn from the shorter half of the split so that a few-shot prompt fits the input limit more often.
        """
        if n == 0:
            return []
        if dataset not in DATASET_SPLITS:
            raise InputError(f"unknown dataset {_shown(dataset)}; choose one of: {', '.join(DATASET_SPLITS)}")
        pool = [r for r in self.rows(dataset, DATASET_SPLITS[dataset][1]) if r["dialogue"].strip() != exclude.strip()]
        if len(pool) < n:
            raise InputError(f"{dataset} has only {len(pool)} rows to draw shots from")
        pool = sorted(pool, key=lambda r: (len(r["dialogue"]), r["fname"]))[: max(n, len(pool) // 2)]
        picked = random.Random(seed).sample(pool, n)
        return [{"fname": r["fname"], "dialogue": r["dialogue"], "summary": r["summary"]} for r in picked]

    # -------------------------------------------------------------------------------------------- toxicity

    def score(self, text: str) -> dict:
        try:
            text = clean_text(text, field="The text", limit=MAX_SCORE_CHARS)
        except InputError as err:
            return _refusal(err)
        ms = self.models
        if ms.scorer is None:
            return _refusal(f"no toxicity scorer is available: {ms.scorer_error}")
        [p] = ms.score([text])
        return {"ok": True, "message": "", "toxicity": round(float(p), 4), "label": "toxic" if p >= 0.5 else
                "not toxic", "scorer": ms.scorer.name, "scorer_note": ms.scorer_note, "chars": len(text)}

    def toxicity_sample(self, n=SAMPLE_DEFAULT, seed=0, dataset: str = data.DEMO, *, max_new_tokens=64,
                        progress: Callable[[float, str], None] | None = None, batch_size: int = 16) -> dict:
        """Every available model over the same seeded sample of test dialogues (greedy, instruction prompt).

        Returns {"ok", "message", "records": DataFrame (model, slot, fname, toxicity, summary), "stats": DataFrame
        (model, n, mean, std, ci_low, ci_high), "top": DataFrame (the most toxic outputs)}.
        """
        try:
            n = _number(n, "sample size", *SAMPLE_RANGE, integer=True)
            seed = _number(seed, "seed", 0, SEED_MAX, integer=True)
            settings = generation_settings("greedy", max_new_tokens)
            if dataset not in DATASET_SPLITS:
                raise InputError(f"unknown dataset {_shown(dataset)}; choose one of: {', '.join(DATASET_SPLITS)}")
            rows = self.rows(dataset, DATASET_SPLITS[dataset][0])
        except InputError as err:
            return _refusal(err)
        ms = self.models
        if ms.scorer is None:
            return _refusal(f"no toxicity scorer is available: {ms.scorer_error}")
        slots = ms.available
        if not slots:
            return _refusal("no model is available")
        sample = random.Random(seed).sample(rows, min(n, len(rows)))
        texts = [prompts.zero_shot(r["dialogue"]) for r in sample]
        chunks = [texts[i: i + batch_size] for i in range(0, len(texts), batch_size)]
        outputs = {slot: [] for slot in slots}
        for i, chunk in enumerate(chunks):  # chunked so that other requests get the models between chunks
            if progress:
                progress(i / len(chunks), f"{len(slots)} models: {i * batch_size}/{len(texts)} dialogues")
            for slot, texts_out in ms.generate_slots(slots, chunk, settings, batch_size=batch_size).items():
                outputs[slot] += texts_out
        records = []
        for slot in slots:
            scores = ms.score(outputs[slot])
            records += [{"model": LABELS[slot], "slot": slot, "fname": r["fname"], "toxicity": float(p),
                         "summary": o} for r, o, p in zip(sample, outputs[slot], scores)]
        if progress:
            progress(1.0, "done")
        frame = pd.DataFrame(records, columns=["model", "slot", "fname", "toxicity", "summary"])
        stats = toxicity_stats(frame)
        top = frame.sort_values("toxicity", ascending=False).head(10)[["model", "toxicity", "fname", "summary"]]
        message = (f"{len(sample)} dialogues from {dataset} test (seed {seed}), {len(slots)} models, greedy, "
                   f"scored by {ms.scorer.name}.")
        if len(sample) < n:
            message += f" The split has only {len(sample)} dialogues."
        if ms.scorer_note:
            message += f" Fallback scorer: {ms.scorer_note}."
        return {"ok": True, "message": message, "n": len(sample), "seed": seed, "dataset": dataset,
                "scorer": ms.scorer.name, "records": frame, "stats": stats, "top": top.reset_index(drop=True)}

    # -------------------------------------------------------------------------------------------- dashboard

    def runs(self) -> list[dict]:
        """Measured runs: every metrics file in results/, plus the served models' own metrics.json from the store."""
        from workbench import results

        runs, seen = [], set()
        try:
            found = results.list_runs(self.results_dir) if self.results_dir.is_dir() else []
        except Exception:  # noqa: BLE001 - an unreadable folder shows as "no runs", never a crash
            found = []
        for run in found:
            run = dict(run, _source="results")
            runs.append(run)
            seen.add(run.get("run_id"))
        for slot in SLOTS:
            st = self.models.status[slot]
            path = st.folder / "metrics.json" if st.ok and st.folder else None
            if path is None or not path.is_file():
                continue
            try:
                run = json.loads(path.read_text())
                results.validate(run)
            except Exception:  # noqa: BLE001
                continue
            if run.get("run_id") not in seen:
                seen.add(run.get("run_id"))
                runs.append(dict(run, _source=f"store ({slot})"))
        return [r for r in runs if isinstance(r.get("metrics"), dict) and "rouge1" in r["metrics"]]

    def dashboard(self, dataset: str | None = None) -> DashboardData:
        return dashboard_data(self.runs(), dataset, results_dir=self.results_dir)


# ------------------------------------------------------------------------------------------------ pure helpers


PRECISION_FILE = Path("benchmarks") / "precision.json"  # inside the results folder; `python -m benchmarks.precision`


def precision_note(precision, results_dir: str | Path) -> str:
    """How close the served precision's outputs are to fp32, as measured on the demo family's test split; where it
    was not measured, the plain caveat. Reduced precision is not "exact": the head's leading logits are recomputed in
    fp32, but the hidden state they come from was computed in reduced precision, so greedy choices can still flip."""
    if precision.key == "fp32":
        return "fp32: the reference precision"
    try:
        measured = json.loads((Path(results_dir) / PRECISION_FILE).read_text())
        entry = next(e for e in measured["precisions"] if e.get("key") == precision.key)
        share, delta = float(entry["identical_share"]), float(entry["max_abs_rouge1_delta"])
        n = int(entry["outputs"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return f"{precision}: outputs can differ from fp32 (not measured for this precision)"
    return f"{precision}: {share:.0%} of {n} demo test outputs identical to fp32, ROUGE-1 within {delta:.3f}"


def _refusal(err) -> dict:
    return {"ok": False, "message": str(err), "notices": [str(err)]}


def _round(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def _overlap(prediction: str, reference: str) -> list[list]:
    from workbench import scoring

    return [[token, bool(matched)] for token, matched in scoring.word_overlap(prediction, reference)]


def toxicity_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: n, mean, std and the 95% bootstrap CI of the mean toxicity."""
    from workbench import scoring

    rows = []
    for model, group in frame.groupby("model", sort=False):
        ci = scoring.mean_ci(group["toxicity"].tolist())
        rows.append({"model": model, "n": int(ci["n"]), "mean": ci["mean"], "std": ci["std"],
                     "ci_low": ci["ci_low"], "ci_high": ci["ci_high"]})
    return pd.DataFrame(rows, columns=["model", "n", "mean", "std", "ci_low", "ci_high"])


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def dataset_key(run: dict) -> str:
    """The Dashboard's dataset choice for a run. Rows held out of the file that also trained the model are a dataset
    of their own, and the choice says so: a score on them is never shown as if it came from a separate split."""
    ds = run.get("dataset") or {}
    held_out = " (held out of the training data)" if ds.get("held_out") else ""
    return f"{ds.get('id', '?')} / {ds.get('split', '?')}{held_out}"


def run_label(run: dict) -> str:
    method = run.get("method", "?")
    return METHOD_LABELS.get(method, method)


def _latest_per_method(runs: list[dict]) -> list[dict]:
    latest: dict[str, dict] = {}
    for run in runs:
        method = run.get("method", "?")
        if method not in latest or str(run.get("finished_at", "")) > str(latest[method].get("finished_at", "")):
            latest[method] = run
    return sorted(latest.values(), key=lambda r: (_method_rank(r.get("method", "")), r.get("method", "")))


def runs_table(runs: list[dict]) -> pd.DataFrame:
    """Provenance of every measured run, newest first."""
    rows = []
    for run in runs:
        m, ds, params = run.get("metrics") or {}, run.get("dataset") or {}, run.get("params") or {}
        rows.append({
            "method": run.get("method"), "model": run.get("model_id"), "revision": str(run.get("revision") or "")[:12],
            "dataset": ds.get("id"), "split": ds.get("split") + (" (held out)" if ds.get("held_out") else "")
            if ds.get("split") else None, "n": ds.get("n"),
            "ROUGE-1": _round((m.get("rouge1") or {}).get("mean")), "ROUGE-L": _round((m.get("rougeL") or {}).get("mean")),
            "toxicity": _round((m.get("toxicity") or {}).get("mean")),
            "trainable params": params.get("trainable"), "commit": str(run.get("git_commit") or "")[:10],
            "date": str(run.get("finished_at") or "")[:19], "run id": run.get("run_id"), "source": run.get("_source"),
        })
    frame = pd.DataFrame(rows, columns=["method", "model", "revision", "dataset", "split", "n", "ROUGE-1", "ROUGE-L",
                                        "toxicity", "trainable params", "commit", "date", "run id", "source"])
    return frame.sort_values("date", ascending=False, kind="stable").reset_index(drop=True)


def read_log(results_dir: Path, log_file: str) -> list[dict]:
    """Rows of a training log; only files inside the results folder are read."""
    root = Path(results_dir).resolve()
    path = (root / log_file).resolve()
    if root not in path.parents or not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            out.append(row)
    return out


CURVE_METRICS = ("loss", "reward_mean", "kl", "toxicity_mean")


def published_reference() -> pd.DataFrame:
    """The reference recipe's published ROUGE-1 with its source, for a separate, labelled table/chart."""
    return pd.DataFrame([{**r, "source": PUBLISHED_SOURCE} for r in PUBLISHED_REFERENCE])


def dashboard_data(runs: list[dict], dataset: str | None = None, *, results_dir: Path | None = None) -> DashboardData:
    """Long-format frames for every dashboard chart, from measured runs of one dataset (default: the one with the
    most runs). Latest run per method in the charts; every run in the table."""
    results_dir = Path(results_dir or paths.RESULTS_DIR)
    reference = published_reference()
    keys = sorted({dataset_key(r) for r in runs}, key=lambda k: (-sum(dataset_key(r) == k for r in runs), k))
    empty = pd.DataFrame()
    if not runs:
        return DashboardData("No runs yet: run `python -m trainers.build_demo` (or any trainer) to measure the models; "
                             "their metrics land in results/.", [], None, runs_table([]), empty, empty, empty, None,
                             empty, "", empty, reference)
    if dataset not in keys:
        dataset = keys[0]
    chosen = _latest_per_method([r for r in runs if dataset_key(r) == dataset])

    rouge_rows, params_rows, tox_rows, curve_rows = [], [], [], []
    for run in chosen:
        label, m = run_label(run), run["metrics"]
        for rtype in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            if rtype in m:
                e = m[rtype]
                rouge_rows.append({"model": label, "method": run.get("method"), "rouge_type": rtype, "mean": e["mean"],
                                   "ci_low": e["ci_low"], "ci_high": e["ci_high"], "n": e.get("n"),
                                   "run_id": run.get("run_id")})
        trainable = (run.get("params") or {}).get("trainable")
        if run.get("method") != "base" and trainable and "rouge1" in m:  # a reward model's run has no ROUGE
            e = m["rouge1"]
            params_rows.append({"model": label, "method": run.get("method"), "trainable": trainable,
                                "total": (run.get("params") or {}).get("total"), "rouge1": e["mean"],
                                "ci_low": e["ci_low"], "ci_high": e["ci_high"]})
        if "toxicity" in m and run.get("method") in ("base", "full", "lora"):
            tox_rows.append(_tox_row(label, m["toxicity"], "own evaluation run"))
        if run.get("method") == "ppo":
            if "toxicity_start" in m:
                tox_rows.append(_tox_row("LoRA (PPO start, same run)", m["toxicity_start"], "PPO run: before"))
            if "toxicity" in m:
                tox_rows.append(_tox_row(label, m["toxicity"], "PPO run: after"))
        log_file = (run.get("training") or {}).get("log_file")
        if log_file:
            for row in read_log(results_dir, log_file):
                for metric in CURVE_METRICS:
                    if isinstance(row.get(metric), (int, float)):
                        curve_rows.append({"model": label, "method": run.get("method"), "metric": metric,
                                           "step": row["step"], "value": float(row[metric])})
    rouge = pd.DataFrame(rouge_rows)
    base = rouge[(rouge["method"] == "base")] if len(rouge) else rouge
    improvement, base_rouge1 = pd.DataFrame(), None
    if len(base):
        base_means = dict(zip(base["rouge_type"], base["mean"]))
        base_rouge1 = base_means.get("rouge1")
        improvement = pd.DataFrame([
            {"model": r["model"], "rouge_type": r["rouge_type"],
             "improvement_pct": 100.0 * (r["mean"] - base_means[r["rouge_type"]]) / base_means[r["rouge_type"]]}
            for _, r in rouge.iterrows()
            if r["method"] != "base" and base_means.get(r["rouge_type"])])
    note = ""
    ppo = next((r for r in chosen if r.get("method") == "ppo"), None)
    if ppo and "toxicity_diff_vs_start" in ppo["metrics"]:
        d = ppo["metrics"]["toxicity_diff_vs_start"]
        note = (f"PPO vs its LoRA start (paired, same dialogues): {d['mean']:+.4f} "
                f"[95% CI {d['ci_low']:+.4f}, {d['ci_high']:+.4f}], n={d.get('n')}")
    message = f"{len(runs)} measured run(s); charts show the latest run per method on {dataset}."
    return DashboardData(message, keys, dataset, runs_table(runs), rouge, improvement, pd.DataFrame(params_rows),
                         base_rouge1, pd.DataFrame(tox_rows), note, pd.DataFrame(curve_rows), reference)


def _tox_row(label: str, e: dict, measured: str) -> dict:
    return {"model": label, "measured": measured, "mean": e["mean"], "ci_low": e["ci_low"], "ci_high": e["ci_high"],
            "n": e.get("n")}
