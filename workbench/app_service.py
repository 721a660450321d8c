"""Request handling for the workbench app, independent of any UI toolkit (no gradio import here).

`WorkbenchService` wraps one loaded `ModelSet` and answers the app's requests with plain dicts and DataFrames:

    compare(dialogue, reference, ...)      the chosen models side by side (a CompareResult): text, latency, toxicity,
                                           ROUGE, word overlap
    prompt(dialogue, reference, shots...)  zero/one/few-shot prompting of the base model, with the exact prompt
    score(text)                            toxicity of any text
    toxicity_sample(n, seed, dataset)      every available model over a seeded sample of test dialogues
    dashboard(dataset)                     the measured runs in results/ (the single source of a run's metrics)

Every input is cleaned by the rules of `workbench.inputs` (control and invisible characters removed, hard length
limits, empty input refused) before any model call, so that the UI layer only wires components to these methods.
User mistakes come back as `{"ok": False, "message": ...}` (a CompareResult with ok=False for compare); nothing a
user types is ever a file path or a model id (datasets are a fixed list). The Dashboard's frames are built by
`workbench.dashboard`. The names of both modules that the tabs and older callers take from here are re-exported
below.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from workbench import data, paths, prompts
from workbench.dashboard import (PUBLISHED_REFERENCE, PUBLISHED_SOURCE, DashboardData, dashboard_data,
                                 dataset_key, published_reference, read_log, run_label, runs_table, toxicity_stats)
from workbench.generation import count_tokens
from workbench.inputs import (DATASET_SPLITS, DECODING, GEN_RANGES, MAX_DIALOGUE_CHARS,
                              MAX_REFERENCE_CHARS, MAX_SCORE_CHARS, MAX_SHOTS, MAX_SHOTS_CHARS, REFERENCE_SEPARATOR,
                              SAMPLE_DEFAULT, SAMPLE_RANGE, SEED_MAX, SHOT_SEPARATOR, InputError, clean_text,
                              chosen_slots, dataset_choice, fit_dialogue, fitting_prefix, generation_settings,
                              join_references, number, parse_references, parse_shots, refusal, shown)
from workbench.modelset import MAX_SHOWN, MIN_SHOWN, ModelSet

__all__ = [  # the service, and the input rules and dashboard frames that callers have always taken from here
    "WorkbenchService", "CompareResult", "SlotOutput", "precision_note", "demo_family_note", "DashboardData",
    "dashboard_data", "dataset_key",
    "published_reference", "read_log", "run_label", "runs_table", "toxicity_stats", "PUBLISHED_REFERENCE",
    "PUBLISHED_SOURCE", "InputError", "clean_text", "fit_dialogue", "fitting_prefix", "generation_settings",
    "join_references", "parse_references", "parse_shots", "DATASET_SPLITS", "DECODING", "GEN_RANGES",
    "MAX_DIALOGUE_CHARS", "MAX_REFERENCE_CHARS", "MAX_SCORE_CHARS", "MAX_SHOTS", "MAX_SHOTS_CHARS",
    "REFERENCE_SEPARATOR", "SAMPLE_DEFAULT", "SAMPLE_RANGE", "SEED_MAX", "SHOT_SEPARATOR",
]

ROUGE_SHOWN = ("rouge1", "rouge2", "rougeL")
RELOAD_MIN_INTERVAL_S = 30.0  # "Refresh models" re-reads every model: at most this often, whoever asks
DEFAULT_SHOWN = 4  # slots Compare shows until the user picks others


@dataclasses.dataclass
class SlotOutput:
    """One slot's card in a Compare: the model that wrote the summary (or why it could not), its latency, toxicity
    and, with a reference, ROUGE and the words shared with it."""

    slot: str
    label: str
    model: str | None
    revision: str | None
    available: bool
    family: str | None = None
    note: str | None = None
    text: str | None = None
    error: str | None = None
    latency_s: float | None = None
    shared_call: bool = False
    toxicity: float | None = None
    rouge: dict[str, float] | None = None
    overlap: list[list] | None = None


@dataclasses.dataclass
class CompareResult:
    """What `WorkbenchService.compare` returns: the UI reads its fields, the API gets `as_dict()` (the JSON it has
    always returned). A refusal has ok=False, the message, and nothing else."""

    ok: bool
    message: str
    notices: list[str] = dataclasses.field(default_factory=list)
    slots: list[str] = dataclasses.field(default_factory=list)  # the slots compared, in the order shown
    models: dict[str, SlotOutput] = dataclasses.field(default_factory=dict)
    prompt: str = ""
    references: list[str] = dataclasses.field(default_factory=list)
    settings: dict = dataclasses.field(default_factory=dict)
    seed: int | None = None
    truncated: bool = False
    input_tokens: int | None = None
    input_tokens_before_truncation: int | None = None
    max_input_tokens: int | None = None
    wall_time_s: float | None = None
    scorer: str | None = None

    @classmethod
    def refused(cls, err) -> CompareResult:
        return cls(ok=False, message=str(err), notices=[str(err)])

    @classmethod
    def from_dict(cls, data: dict) -> CompareResult:
        """A result back from the JSON of the `compare` endpoint (what API clients hold)."""
        models = {slot: SlotOutput(**entry) for slot, entry in (data.get("models") or {}).items()}
        return cls(**{**data, "models": models})

    def as_dict(self) -> dict:
        """The JSON of the `compare` endpoint: {"ok", "message", "notices"} for a refusal, every field otherwise."""
        return dataclasses.asdict(self) if self.ok else refusal(self.message)


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
        rows = [{"slot": s, "label": ms.label(s), "ok": st.ok, "model": st.ref, "revision": st.revision,
                 "error": st.error, "family": st.family_label, "note": st.note}
                for s, st in ((s, ms.status[s]) for s in ms.slots)]
        return rows

    def slot_choices(self) -> list[tuple[str, str]]:
        """(label, slot) of every slot, in the app's one order: what Compare offers to show."""
        return [(self.models.label(s), s) for s in self.models.slots]

    def default_slots(self) -> list[str]:
        """What Compare shows until the user picks: the first four configured slots (base, full, LoRA, PPO in the
        standard configs), at least two."""
        ms = self.models
        configured = [s for s in ms.slots if s in ms.config.slots]
        return (configured[:DEFAULT_SHOWN] if len(configured) >= MIN_SHOWN else ms.slots[:MIN_SHOWN])

    def check_slots(self, slots) -> list[str]:
        """The user's choice of slots to compare, checked (InputError with a sentence otherwise)."""
        return chosen_slots(slots, self.models.slots, MIN_SHOWN, MAX_SHOWN)

    def status_summary(self) -> dict:
        ms = self.models
        return {"slots": self.status(), "load_seconds": round(ms.load_seconds, 2),
                "scorer": getattr(ms.scorer, "name", None), "scorer_error": ms.scorer_error,
                "scorer_note": ms.scorer_note, "max_input_tokens": ms.max_input_tokens, "dtype": ms.serving,
                "precision_note": (engine_note(ms.compute_type) if ms.compute_type
                                   else precision_note(ms.precision, self.results_dir,
                                                       {st.ref: st.revision for st in ms.status.values() if st.ok})),
                "device": str(ms.device),
                "family_note": demo_family_note([st.ref for st in ms.status.values() if st.ok], self.results_dir)}

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
            return {**self.status_summary(), "notice": "A reload is already running."}
        try:
            wait = self._last_reload + RELOAD_MIN_INTERVAL_S - time.monotonic()
            if wait > 0:
                return {**self.status_summary(), "notice": f"The models were reloaded just now; try again in "
                                                           f"{math.ceil(wait)} s."}
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
        key = (dataset_choice(dataset), split)
        with self._rows_lock:
            if key not in self._rows:
                try:
                    self._rows[key] = data.load_dialogues(dataset, split)
                except (data.DataError, OSError) as err:
                    raise InputError(f"The dataset {dataset} ({split}) is not available: {err}") from None
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
        raise InputError(f"There is no example {shown(example_id)} in {dataset}.")

    def example_fields(self, dataset: str, example_id: str) -> dict:
        """What the UI fills in when an example is picked: the dialogue and its reference(s)."""
        row = self.example(dataset, example_id)
        return {"dialogue": row["dialogue"], "reference": join_references(row["references"]),
                "topic": row["topic"], "fname": row["fname"]}

    # -------------------------------------------------------------------------------------------- compare

    def compare(self, dialogue: str, reference: str = "", *, decoding: str = "greedy", max_new_tokens=64,
                num_beams=4, temperature=0.7, top_p=0.9, seed=0, slots=None) -> CompareResult:
        """The chosen models (default: `default_slots`) on one dialogue with the instruction prompt: one
        mixed-adapter call for the base and every adapter, one call per full model."""
        try:
            dialogue = clean_text(dialogue, field="The dialogue", limit=MAX_DIALOGUE_CHARS)
            references = parse_references(clean_text(reference, field="The reference", limit=MAX_REFERENCE_CHARS,
                                                     required=False))
            settings = generation_settings(decoding, max_new_tokens, num_beams, temperature, top_p)
            seed = number(seed, "seed", 0, SEED_MAX, integer=True)
            slots = self.default_slots() if slots is None else self.check_slots(slots)
        except InputError as err:
            return CompareResult.refused(err)
        ms = self.models
        if not ms.available:
            return CompareResult.refused("No model is available: " + "; ".join(
                s.describe() for s in ms.status.values()) + ".")
        limit = ms.max_input_tokens
        kept, before, after = fit_dialogue(ms.tokenizer or ms.full_tokenizer, dialogue, limit)
        notices = [] if kept == dialogue else [
            f"The dialogue is {before:,} tokens with the prompt; the models read at most {limit}, so it was truncated "
            f"to its first {len(kept):,} of {len(dialogue):,} characters."]
        prompt = prompts.zero_shot(kept)
        started = time.time()
        summaries = ms.summarize({s: prompt for s in slots}, settings, seed=seed if settings.do_sample else None)
        wall = time.time() - started
        outputs = self._outputs(summaries, references, notices)
        return CompareResult(
            ok=True, message=" ".join(notices), notices=notices, slots=slots, models=outputs, prompt=prompt,
            references=references, settings=settings.as_dict(), seed=seed if settings.do_sample else None,
            truncated=kept != dialogue, input_tokens=after, input_tokens_before_truncation=before,
            max_input_tokens=limit, wall_time_s=round(wall, 3), scorer=getattr(ms.scorer, "name", None))

    def _outputs(self, summaries: dict, references: list[str], notices: list[str]) -> dict[str, SlotOutput]:
        """Each slot's card: its summary scored for toxicity and, with references, ROUGE and word overlap."""
        ms = self.models
        texts = {s: r.text for s, r in summaries.items() if r.text is not None}
        tox = self._toxicity(list(texts.values()))
        tox_by_slot = dict(zip(texts, tox)) if tox is not None else {}
        if tox is None and ms.scorer_error:
            notices.append(f"The toxicity scorer is unavailable: {ms.scorer_error}.")
        rouge = self._rouge(list(texts.values()), references) if references and texts else []
        rouge_by_slot = dict(zip(texts, rouge))
        shared = {s for group in ms.call_groups(list(texts)) if len(group) > 1 for s in group}
        out = {}
        for slot, r in summaries.items():
            st, ok = ms.status[slot], r.text is not None
            out[slot] = SlotOutput(
                slot=slot, label=ms.label(slot), model=st.ref, revision=st.revision, available=ok,
                family=st.family_label, note=st.note, text=r.text, error=r.error,
                latency_s=round(r.seconds, 3) if ok else None, shared_call=slot in shared,
                toxicity=_round(tox_by_slot.get(slot)),
                rouge={k: round(rouge_by_slot[slot][k], 4) for k in ROUGE_SHOWN} if slot in rouge_by_slot else None,
                overlap=_overlap(r.text, references[0]) if slot in rouge_by_slot else None)
        return out

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
            settings = generation_settings("greedy", max_new_tokens)
            shot_info = self._shots(dialogue, shots, shot_source, shot_seed, custom_shots, dataset)
        except InputError as err:
            return refusal(err)
        ms = self.models
        if not ms.status["base"].ok:
            return refusal(f"The base model is unavailable: {ms.status['base'].error}.")
        text = prompts.build_prompt(dialogue, [(r["dialogue"], r["summary"]) for r in shot_info])
        limit = ms.max_input_tokens
        n_tokens = count_tokens(ms.tokenizer, text)
        notices, dropped = [], ""
        if shot_source == "typed" and not shot_info:
            notices.append("The typed shots are empty, so the run was zero-shot (the instruction prompt).")
        if n_tokens > limit:
            dropped = text[fitting_prefix(ms.tokenizer, text, limit):]
            notices.append(f"The prompt is {n_tokens:,} tokens but the model reads at most {limit}: the last "
                           f"{n_tokens - limit:,} tokens (the end of the target dialogue and the cue) are cut off, so "
                           "the output is unreliable. Use fewer or shorter shots.")
        [summary] = ms.summarize({"base": text}, settings).values()
        if summary.text is None:
            return refusal(f"The base model failed: {summary.error}.")
        tox = self._toxicity([summary.text])
        rouge = self._rouge([summary.text], references)[0] if references else None
        return {"ok": True, "message": " ".join(notices), "notices": notices, "prompt": text, "style": prompts.style_for(shot_info),
                "shots": shot_info, "prompt_tokens": n_tokens, "max_input_tokens": limit,
                "truncated": n_tokens > limit, "dropped_text": dropped, "output": summary.text,
                "latency_s": round(summary.seconds, 3), "toxicity": _round(tox[0]) if tox else None,
                "rouge": {k: round(rouge[k], 4) for k in ROUGE_SHOWN} if rouge else None,
                "overlap": _overlap(summary.text, references[0]) if references else None,
                "references": references, "model": ms.status["base"].ref}

    def _shots(self, dialogue: str, shots, source: str, seed, typed: str, dataset: str) -> list[dict]:
        """The in-context examples of a Prompting run: typed by the user, or drawn from the dataset."""
        n_shots = number(shots, "number of shots", 0, MAX_SHOTS, integer=True)
        if source == "typed":
            typed = clean_text(typed, field="The typed shots", limit=MAX_SHOTS_CHARS, required=False)
            return [{"fname": f"typed-{i}", "dialogue": d, "summary": s}
                    for i, (d, s) in enumerate(parse_shots(typed), 1)]
        if source != "dataset":
            raise InputError(f"The shot source must be 'dataset' or 'typed' (got {shown(source)}).")
        return self.draw_shots(dataset, n_shots, number(seed, "shot seed", 0, SEED_MAX, integer=True),
                               exclude=dialogue)

    def draw_shots(self, dataset: str, n: int, seed: int, exclude: str = "") -> list[dict]:
        """`n` seeded examples from the dataset's train/validation split, never the target dialogue itself.

        Drawn from the shorter half of the split so that a few-shot prompt fits the input limit more often.
        """
        if n == 0:
            return []
        rows = self.rows(dataset_choice(dataset), DATASET_SPLITS[dataset][1])
        pool = [r for r in rows if r["dialogue"].strip() != exclude.strip()]
        if len(pool) < n:
            raise InputError(f"The {dataset} dataset has only {len(pool)} rows to draw shots from.")
        pool = sorted(pool, key=lambda r: (len(r["dialogue"]), r["fname"]))[: max(n, len(pool) // 2)]
        picked = random.Random(seed).sample(pool, n)
        return [{"fname": r["fname"], "dialogue": r["dialogue"], "summary": r["summary"]} for r in picked]

    # -------------------------------------------------------------------------------------------- toxicity

    def score(self, text: str) -> dict:
        try:
            text = clean_text(text, field="The text", limit=MAX_SCORE_CHARS)
        except InputError as err:
            return refusal(err)
        ms = self.models
        if ms.scorer is None:
            return refusal(f"No toxicity scorer is available: {ms.scorer_error}.")
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
            n = number(n, "sample size", *SAMPLE_RANGE, integer=True)
            seed = number(seed, "seed", 0, SEED_MAX, integer=True)
            settings = generation_settings("greedy", max_new_tokens)
            rows = self.rows(dataset_choice(dataset), DATASET_SPLITS[dataset][0])
        except InputError as err:
            return refusal(err)
        ms = self.models
        if ms.scorer is None:
            return refusal(f"No toxicity scorer is available: {ms.scorer_error}.")
        slots = ms.available
        if not slots:
            return refusal("No model is available.")
        sample = random.Random(seed).sample(rows, min(n, len(rows)))
        outputs = self._sample_outputs(slots, sample, settings, progress, batch_size)
        records = []
        for slot in slots:
            scores = ms.score(outputs[slot])
            records += [{"model": ms.label(slot), "slot": slot, "fname": r["fname"], "toxicity": float(p),
                         "summary": o} for r, o, p in zip(sample, outputs[slot], scores)]
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

    def _sample_outputs(self, slots, sample: list[dict], settings, progress, batch_size: int) -> dict[str, list]:
        """Greedy summaries of every slot over the sample, in chunks so that other requests get the models between
        chunks; `progress(fraction, text)` after each chunk, the fraction being the dialogues done out of all."""
        texts = [prompts.zero_shot(r["dialogue"]) for r in sample]
        outputs = {slot: [] for slot in slots}
        for start in range(0, len(texts), batch_size):
            if progress:
                progress(start / len(texts), f"{start} of {len(texts)} dialogues summarised by {len(slots)} models")
            chunk = texts[start: start + batch_size]
            for slot, texts_out in self.models.generate_slots(slots, chunk, settings, batch_size=batch_size).items():
                outputs[slot] += texts_out
        if progress:
            progress(1.0, f"{len(texts)} of {len(texts)} dialogues summarised; scoring")
        return outputs

    # -------------------------------------------------------------------------------------------- dashboard

    def runs(self) -> list[dict]:
        """Measured runs: every valid metrics record in results/, the single source of a run's metrics (the store's
        metrics.json is written from the same record, so it adds nothing)."""
        from workbench import results

        try:
            found = results.list_runs(self.results_dir) if self.results_dir.is_dir() else []
        except Exception:  # noqa: BLE001 - an unreadable folder shows as "no runs", never a crash
            found = []
        return [r for r in found if isinstance(r.get("metrics"), dict) and "rouge1" in r["metrics"]]

    def dashboard(self, dataset: str | None = None) -> DashboardData:
        return dashboard_data(self.runs(), dataset, results_dir=self.results_dir)


# ------------------------------------------------------------------------------------------------ pure helpers


PRECISION_FILE = Path("benchmarks") / "precision.json"  # inside the results folder; `python -m benchmarks.precision`


def engine_note(compute_type: str) -> str:
    """What the header says when CTranslate2 serves (`engine: ctranslate2` in the models config)."""
    if compute_type == "float32":
        return "CTranslate2 float32: the same summaries as PyTorch fp32 (tests/test_ct2engine.py)"
    return f"CTranslate2 {compute_type}: outputs can differ from fp32 (docs/PERFORMANCE.md, Engine)"


def precision_note(precision, results_dir: str | Path, served: dict[str, str] | None = None) -> str:
    """`_precision_note`, followed by why this precision serves (the CPU kind `auto` saw), when the model set says.
    `served` maps the served models' refs to their revisions: a measurement of other revisions of them says so."""
    note = _precision_note(precision, results_dir, served or {})
    return f"{note} ({precision.reason})" if getattr(precision, "reason", "") else note


def _precision_note(precision, results_dir: str | Path, served: dict[str, str]) -> str:
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
        models = measured.get("models", {}).values()
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return f"{precision}: outputs can differ from fp32 (not measured for this precision)"
    stale = any(m.get("ref") in served and m.get("revision") != served[m["ref"]] for m in models
                if isinstance(m, dict))
    when = " (measured on earlier revisions of these models)" if stale else ""
    return f"{precision}: {share:.0%} of {n} demo test outputs identical to fp32, ROUGE-1 within {delta:.3f}{when}"


DEMO_PREFIX = "demo/"
HUB_COMMAND = "python -m workbench --models configs/models/hub.yaml"


def demo_family_note(served: list[str], results_dir: str | Path) -> str:
    """One line on what the demo family is when any of its models serves: size, what it was trained on, and its
    ROUGE-1 on real DialogSum test from the committed runs; then how to serve the Hub models instead."""
    from workbench import results

    if not any(str(ref).startswith(DEMO_PREFIX) for ref in served):
        return ""
    real = {}
    for run in results.list_runs(results_dir):  # oldest first: the latest run per model wins
        if run["dataset"].get("id") == "dialogsum-local" and run["dataset"].get("split") == "test":
            real[run["model_id"]] = run
    size = next((r["params"].get("total") for r in real.values() if r["model_id"].endswith("-base")), None)
    # three decimals: at two, the full model's 0.359 read as 0.36, the bar it misses, beside a baseline of "0.35"
    scores = [f"{label} {real[ref]['metrics']['rouge1']['mean']:.3f}" for label, ref in
              (("full", "demo/flan-t5-demo-full"), ("LoRA", "demo/flan-t5-demo-lora"), ("PPO", "demo/flan-t5-demo-ppo"),
               ("one-line baseline", "baseline/lead")) if ref in real]
    size_text = f"{size / 1e6:.1f}M-parameter " if size else "small "
    measured = (f"; ROUGE-1 on {real['demo/flan-t5-demo-full']['dataset']['n']} real DialogSum test dialogues: "
                + ", ".join(scores)) if "demo/flan-t5-demo-full" in real else ""
    return (f"Offline demo family: {size_text}FLAN-T5-shaped models trained here on generated dialogues only, no "
            f"DialogSum{measured}. For FLAN-T5-base itself: {HUB_COMMAND}")


def _round(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def _overlap(prediction: str, reference: str) -> list[list]:
    from workbench import scoring

    return [[token, bool(matched)] for token, matched in scoring.word_overlap(prediction, reference)]
