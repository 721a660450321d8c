"""The models the workbench compares, loaded once: base, full fine-tune, LoRA and PPO, and any further slots the
models config names (e.g. `orpo: {ref: ..., kind: adapter}`, a preference-optimised LoRA adapter).

Base and every adapter slot share ONE copy of the base weights: the adapters are attached to it with peft and every
request runs them in a single mixed-adapter batch (`adapter_names=["__base__", "lora", "ppo", "orpo"]`). No
`set_adapter` is ever called, so no request changes what another one sees. peft implements `adapter_names` with
forward hooks registered for the duration of a call, so calls into one model are serialised with a lock (on two CPU
cores, running them in parallel would not be faster anyway). The full fine-tune (and any `kind: full` slot) is a
separate model. Concurrent deterministic requests are
not served one after another but micro-batched (`_MicroBatcher`): those that arrive together and share generation
settings run in the same calls, each answered exactly as it would be alone.

Families and fallbacks. A models config names two families: the *configured* one (each slot's `ref`) and the
*fallback* one (each slot's `fallback`, normally the bundled demo family). Every slot serves its configured model if
that loads, else its fallback. An adapter only works on the base it was trained on, so a slot brings its family's
base with it: LoRA and PPO run on the base slot's `ref` when they are the configured adapters, on the base slot's
`fallback` when they are the fallback ones. When the base slot and the adapters come from the same family (the usual
case) they share one base copy; when they do not (a Space serving configs/models/hub.yaml before its owner has pushed
adapters: base = google/flan-t5-base from the Hub, LoRA/PPO = the demo adapters), the adapters' own base is loaded as
a second, small copy instead of attaching them to a base of another shape. We keep the configured base rather than
dropping the whole family to the fallback: it is what the user asked for and it loads; only what could not be had is
replaced, each with what it needs. The full fine-tune stands alone. Every slot's status names its family.

Engines. `engine: torch` (the default) serves as above, with PyTorch and peft: outputs match what training computed.
`engine: ctranslate2` serves every slot from a CTranslate2 copy (workbench/ct2engine.py): a full model converted, an
adapter merged with peft into a copy of its family's base and converted, each copy cached on disk by revision hash
and kept in memory across reloads, so "Refresh models" converts only what a new revision changed. Its `dtype` maps to
a CTranslate2 compute type (auto: int8 on CPU).

A slot that is missing or fails to load is reported with its reason; the others keep working. Everything runs on one
device (`device`: argument, else the config's `device:`, else cuda if available, else cpu); tokenized batches
follow the model they are fed to (`workbench.generation.generate`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
import yaml
from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from workbench import modeling, paths, store, toxicity
from workbench.generation import BASE_ADAPTER, GenerationSettings, generate
from workbench.tokenizing import encode

SLOTS = ("base", "full", "lora", "ppo")  # the four every config knows; Compare shows these by default
DTYPES = ("auto", "int8", "int8-dynamic", "fp32", "bf16", "fp16")  # how the app serves; see modeling.serving_precision
Dtype = Literal["auto", "int8", "int8-dynamic", "fp32", "bf16", "fp16"]
EngineName = Literal["torch", "ctranslate2"]  # what runs the models (see workbench/ct2engine.py)
Kind = Literal["base", "full", "adapter"]  # the base copy, a standalone model, a LoRA adapter on the base copy
ADAPTER_SLOTS = ("lora", "ppo")  # the standard adapter slots; a config may name more (`kind: adapter`)
DEFAULT_KINDS = {"base": "base", "full": "full", "lora": "adapter", "ppo": "adapter"}
# The one list of labels the whole app uses: slots, and the methods the Dashboard charts (a slot's `label:` wins).
LABELS = {"base": "Base (zero-shot)", "full": "Full fine-tune", "lora": "LoRA", "ppo": "PPO (detoxified LoRA)",
          "orpo": "ORPO-tuned (LoRA)", "cpo": "CPO-tuned (LoRA)"}
MIN_SHOWN, MAX_SHOWN = 2, 6  # how many slots Compare shows side by side
DEFAULT_CONFIG = paths.REPO_ROOT / "configs" / "models" / "demo.yaml"
CONFIGURED, FALLBACK = "configured", "fallback"  # the two families a models config names
CONFIG_KEYS = ("toxicity", "toxicity_fallback", "dtype", "device", "engine")
SLOT_KEYS = ("ref", "revision", "fallback", "kind", "label")
# Served prompts are padded to a multiple of this many tokens (see ModelSet._serve): each bucket is one generate call
# per batch, so coarse buckets batch more. A batch of 16 demo Compare requests over 12 dialogues of 71-276 tokens was
# 2.8x faster than serving them one by one with buckets of 32 tokens (5 calls), 6.5x with 64, 9.4x with 128 (3 calls).
SERVE_PAD = 128
MAX_BATCH_ENV, BATCH_WINDOW_ENV = "WORKBENCH_MAX_BATCH", "WORKBENCH_BATCH_WINDOW_MS"
_SLOT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
_RESERVED = {"own", "default", "start"}  # a vote's own summary; peft's and the preference trainer's adapter names
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_FORBID = ConfigDict(extra="forbid")

log = logging.getLogger("workbench.modelset")


class ModelSetError(ValueError):
    """The models config is malformed, or asks for something this machine does not have."""


@dataclass(frozen=True, config=_FORBID)
class SlotSpec:
    """One slot of a models config. `kind` and `label` default from the slot's name for base/full/lora/ppo; any
    further slot says its kind (`adapter`: a LoRA adapter served from the base copy; `full`: a standalone model)."""

    ref: str
    revision: str = "main"
    fallback: str | None = None
    kind: Kind | None = None
    label: str | None = None

    def candidates(self) -> list[tuple[str, str, str]]:
        """(ref, revision, family) to try in order: the configured model, then the fallback."""
        return [(self.ref, self.revision, CONFIGURED)] + ([(self.fallback, "main", FALLBACK)] if self.fallback else [])


@dataclass(frozen=True, config=_FORBID)
class ModelSetConfig:
    """A models config (configs/models/*.yaml), validated by pydantic: unknown keys refused, `Literal` choices, one
    line naming the field for anything wrong. Slots keep the file's order after the standard four."""

    slots: dict[str, SlotSpec]
    toxicity: str = "profanity-check"
    toxicity_fallback: str | None = None
    dtype: Dtype = "auto"
    device: str = "auto"
    engine: EngineName = "torch"

    def __post_init__(self):
        if not _DEVICE.match(self.device):
            raise ModelSetError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        if "base" not in self.slots:
            raise ModelSetError("the base slot is required")
        for slot in self.slots:
            if not _SLOT_NAME.match(slot) or slot in _RESERVED:
                raise ModelSetError(f"{slot}: a slot name is 1-24 lower-case letters, digits or _, starting with a "
                                    f"letter, and not one of {', '.join(sorted(_RESERVED))}")
            if (self.kind(slot) == "base") != (slot == "base"):
                raise ModelSetError(f"{slot}: kind: only the base slot is kind base")

    @classmethod
    def load(cls, path: str | Path | None = None) -> ModelSetConfig:
        path = Path(path) if path else DEFAULT_CONFIG
        if not path.is_file():
            raise ModelSetError(f"{path}: models config not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise ModelSetError(f"{path}: not valid YAML{line}: {getattr(err, 'problem', None) or err}") from None
        if not isinstance(raw, dict):
            raise ModelSetError(f"{path}: expected a mapping of slot: {{ref: ...}}")
        try:
            return cls.from_mapping(raw)
        except ModelSetError as err:
            raise ModelSetError(f"{path}: {err}") from None

    @classmethod
    def from_mapping(cls, raw: dict) -> ModelSetConfig:
        """The config from a parsed YAML mapping: the four standard slots and CONFIG_KEYS by name; any other key
        is a further slot when its entry names a `kind`, else an unknown key."""
        slots = {name: entry for name, entry in raw.items() if name not in CONFIG_KEYS and entry is not None}
        extra = [name for name, entry in slots.items() if name not in SLOTS
                 and not (isinstance(entry, dict) and "kind" in entry)]
        if extra:
            known = sorted(set(SLOTS) | set(CONFIG_KEYS))
            raise ModelSetError(f"unknown key(s) {', '.join(map(str, extra))}; expected {', '.join(known)}, or a "
                                "further slot with `kind: adapter` (a LoRA adapter on the base) or `kind: full`")
        specs = {str(name): _slot_spec(str(name), entry) for name, entry in slots.items()}
        ordered = {s: specs[s] for s in SLOTS if s in specs} | specs
        settings = {k: raw[k] for k in CONFIG_KEYS if raw.get(k) is not None}
        try:
            return cls(slots=ordered, **settings)
        except ValidationError as err:
            raise ModelSetError(_first_error(err)) from None

    def kind(self, slot: str) -> str:
        """base, full or adapter: the slot's `kind`, else what its standard name implies."""
        spec = self.slots.get(slot)
        return (spec.kind if spec and spec.kind else None) or DEFAULT_KINDS.get(slot, "adapter")

    def label(self, slot: str) -> str:
        """What the app calls the slot: its `label`, else the standard label of its name, else the name."""
        spec = self.slots.get(slot)
        return (spec.label if spec and spec.label else None) or LABELS.get(slot, slot)

    @property
    def slot_names(self) -> list[str]:
        """Every slot the app lists: the standard four (configured or not), then the config's further slots."""
        return [*SLOTS, *(s for s in self.slots if s not in SLOTS)]

    def family_base(self, family: str) -> tuple[str, str] | None:
        """(ref, revision) of the base model a family's adapters run on; None when the config names no base for that
        family (no `fallback` on the base slot): its adapters then run on the base their adapter_config.json names,
        if that is a store name or Hub id, else on whatever base the base slot serves."""
        base = self.slots["base"]
        if family == CONFIGURED:
            return base.ref, base.revision
        return (base.fallback, "main") if base.fallback else None


def _first_error(err: ValidationError, prefix: str = "") -> str:
    """pydantic's first error as one line naming the field: "dtype: expected one of auto, ..., got 'fp64'"."""
    first = err.errors(include_url=False)[0]
    where = prefix + ".".join(str(p) for p in first["loc"] if p != "slots")
    if first["type"] == "literal_error":
        choices = first["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        message = f"expected one of {choices}, got {first.get('input')!r}"
    elif first["type"] == "unexpected_keyword_argument":
        message = "unknown key"
    else:
        message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _slot_spec(slot: str, entry) -> SlotSpec:
    if isinstance(entry, str):
        entry = {"ref": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("ref"), str):
        raise ModelSetError(f"{slot}: expected {{ref: NAME, revision: REV}}")
    unknown = sorted(map(str, set(entry) - set(SLOT_KEYS)))
    if unknown:
        raise ModelSetError(f"{slot}: unknown key(s) {', '.join(unknown)}; expected {', '.join(SLOT_KEYS)}")
    entry = {**entry, "revision": str(entry.get("revision", "main"))}
    try:
        return SlotSpec(**entry)
    except ValidationError as err:
        raise ModelSetError(_first_error(err, f"{slot}.")) from None


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The one device the app serves on: `name`, or cuda if available, else cpu (for None/"auto")."""
    if name is None or str(name) == "auto":
        return modeling.default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ModelSetError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelSetError(f"device {name!r}: CUDA is not available on this machine; use cpu or auto")
    return device


@dataclasses.dataclass
class SlotStatus:
    slot: str
    ref: str | None = None
    revision: str | None = None
    folder: Path | None = None
    error: str | None = None
    note: str | None = None  # e.g. why the fallback is served instead of the configured model
    family: str | None = None  # CONFIGURED or FALLBACK: which of the config's families serves this slot
    family_base: str | None = None  # the base that family is built on (what base, LoRA and PPO compute with)
    label: str | None = None  # what the app calls the slot (ModelSetConfig.label)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def family_label(self) -> str | None:
        """'google/flan-t5-base family', or 'fallback: demo/flan-t5-demo-base family' (None when unavailable)."""
        if not self.ok or self.family is None:
            return None
        name = f"{self.family_base} family" if self.family_base else "family"
        return name if self.family == CONFIGURED else f"fallback: {name}"

    def describe(self) -> str:
        if self.ok:
            family = f" [{self.family_label}]" if self.family_label else ""
            note = f" ({self.note})" if self.note else ""
            return f"{self.title}: {self.ref} @ {str(self.revision)[:12]}{family}{note}"
        return f"{self.title}: unavailable — {self.error}"

    @property
    def title(self) -> str:
        return self.label or LABELS.get(self.slot, self.slot)


@dataclasses.dataclass
class Summary:
    slot: str
    text: str | None
    seconds: float
    error: str | None = None


@dataclasses.dataclass
class Engine:
    """One model in memory and the slots it answers for in one call: a base copy with its family's adapters
    attached (slots among base/LoRA/PPO), or the full fine-tune."""

    model: object
    tokenizer: object
    folder: Path
    slots: list[str] = dataclasses.field(default_factory=list)

    def generate(self, slots: Sequence[str], prompts: Sequence[str], settings: GenerationSettings, *,
                 seed: int | None = None, batch_size: int = 16, pad_to_multiple_of: int | None = None) -> list[str]:
        """prompts[i] through slots[i], all in one batched generate call (mixed-adapter when adapters are attached).
        A CTranslate2 model (one slot per engine) pads each batch itself: `pad_to_multiple_of` is torch's."""
        from peft import PeftModel

        if hasattr(self.model, "translator"):
            return self.model.generate(prompts, settings, batch_size=batch_size, seed=seed)
        names = None
        if isinstance(self.model, PeftModel):
            names = [BASE_ADAPTER if s == "base" else s for s in slots]
        if len(prompts) == 1 and settings.num_beams == 1 and not settings.do_sample:
            # Decoded alone, a greedy prompt is one row per step, and a one-row product takes another kernel than two
            # rows or more: FLAN-T5-base's bf16 `wo` (2048 -> 768) rounded that row differently from the same row
            # among others, so a Compare answered alone and one batched with other users' differed (19 of 32 full-
            # model summaries under load, benchmarks.load at FLAN-T5-base scale). Two identical rows, one answer.
            # (Beam search has a row per beam already; sampling keeps one row so that its seed means what it did.)
            texts = generate(self.model, self.tokenizer, [*prompts, *prompts], settings,
                             adapter_names=None if names is None else [*names, *names], seed=seed,
                             batch_size=2, pad_to_multiple_of=pad_to_multiple_of)
            return texts[:1]
        return generate(self.model, self.tokenizer, prompts, settings, adapter_names=names, seed=seed,
                        batch_size=batch_size, pad_to_multiple_of=pad_to_multiple_of)


@dataclasses.dataclass(eq=False)
class _Request:
    """One summarize call waiting for its answers: slot -> prompt in, slot -> Summary out."""

    prompts: dict[str, str]
    out: dict[str, Summary] = dataclasses.field(default_factory=dict)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    error: BaseException | None = None


class _MicroBatcher:
    """Collects concurrent deterministic requests for `window_s` after the first one arrives (or until `max_batch`
    have; at most `max_batch` per batch), then answers those that share generation settings together
    (`ModelSet._serve`: one call per model and length bucket).

    Why: requests were served one at a time, so 20 users waited in line behind each other while a decoding step that
    carries 48 rows costs little more than one that carries 3. The window is waited only by a request that arrived
    while others were in flight (concurrent users): a lone user's request is served at once, with no added latency,
    and under load the models are busy anyway, so waiting requests go into the next batch. The worker thread starts
    with the first request and ends after `idle_s` without one, so that it never keeps a dropped model set alive.

    Under sustained load the users of one batch come back together, but not at once: each reads its answer and sends
    the next request some milliseconds after the others. Served as they came, the first of them went alone (nothing
    was in flight) and the rest queued behind it: batches alternated 1, 19, 1, 19 and every user waited for two
    generate calls instead of one. So within `follow_s` of the end of a batch of n > 1, the next batch waits until
    those n users (and any request that was already waiting) are back, for at most `follow_share` of that batch's
    serving time: the throughput given up is bounded by that share, and a user who left costs the others one such
    wait before the expectation shrinks to the users who came.
    """

    def __init__(self, serve: Callable, max_batch: int, window_s: float, idle_s: float = 2.0, *,
                 follow_s: float = 1.0, follow_share: float = 0.25):
        self.serve, self.max_batch, self.window_s, self.idle_s = serve, max_batch, window_s, idle_s
        self.follow_s, self.follow_share = follow_s, follow_share
        self.queue: list[tuple[_Request, GenerationSettings, float]] = []  # (request, settings, window deadline)
        self.in_flight = 0  # requests submitted and not yet answered
        self.expect = 1  # requests the next batch waits for (the last batch's size, while its users may come back)
        self.ended, self.follow_wait = -1e9, 0.0  # when the last batch ended; how long its users are waited for
        self.cond = threading.Condition()
        self.worker: threading.Thread | None = None
        self.batches: list[int] = []  # requests per batch served (the last 1,000), for benchmarks and tests

    @property
    def enabled(self) -> bool:
        return self.max_batch > 1

    def submit(self, request: _Request, settings: GenerationSettings) -> None:
        """Queue `request` and wait for its answers (re-raising what its batch raised)."""
        with self.cond:
            wait = self.window_s if self.in_flight else 0.0  # alone: no reason to wait for company
            self.in_flight += 1
            self.queue.append((request, settings, time.monotonic() + wait))
            if self.worker is None:
                self.worker = threading.Thread(target=self._run, name="modelset-batcher", daemon=True)
                self.worker.start()
            self.cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error

    def _take(self) -> list[tuple[_Request, GenerationSettings, float]] | None:
        """The next batch: wait for a first request (None after idle_s: the worker ends), then for the window."""
        with self.cond:
            if not self.queue and not self.cond.wait_for(lambda: self.queue, timeout=self.idle_s):
                self.worker = None
                return None
            deadline, enough = self.queue[0][2], self.max_batch
            if self.expect > 1 and time.monotonic() < self.ended + self.follow_s:  # the last batch's users return
                deadline, enough = max(deadline, self.ended + self.follow_wait), min(self.max_batch, self.expect)
            while len(self.queue) < enough and (left := deadline - time.monotonic()) > 0:
                self.cond.wait(left)
            taken, self.queue[:] = self.queue[: self.max_batch], self.queue[self.max_batch:]
            return taken

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            self.batches = [*self.batches[-999:], len(taken)]
            groups: dict[GenerationSettings, list[_Request]] = {}
            for request, settings, _ in taken:
                groups.setdefault(settings, []).append(request)
            started = time.monotonic()
            for settings, requests in groups.items():
                try:
                    self.serve(requests, settings)
                except Exception as err:  # noqa: BLE001 - every caller of the batch gets the error
                    for request in requests:
                        request.error = err
                finally:
                    with self.cond:
                        self.in_flight -= len(requests)
                    for request in requests:
                        request.done.set()
            with self.cond:  # those users may come back together: the next batch waits a little for them
                self.ended, self.expect = time.monotonic(), len(taken) + len(self.queue)  # those, and the waiting
                self.follow_wait = min(self.follow_s, self.follow_share * (self.ended - started))


def _env_number(name: str, default: float, low: float, high: float) -> float:
    """A number from the environment within [low, high]; a clear one-line error otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ModelSetError(f"{name}={raw!r}: expected a number") from None
    if not low <= value <= high:
        raise ModelSetError(f"{name}={raw!r}: expected a number from {low:g} to {high:g}")
    return value


class _Bases:
    """The base models loaded during one reload, by (ref, revision): each loads once however many slots need it, and
    a failure is remembered and reported to every slot that needs that base."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self.found: dict[tuple[str, str], Engine | str] = {}
        self.served: tuple[str, str] | None = None  # (ref, revision) of the base the base slot serves

    def get(self, ref: str, revision: str) -> Engine:
        key = (ref, revision)
        if key not in self.found:
            try:
                folder = store.resolve(ref, revision)
                self.found[key] = Engine(modeling.load_model(folder, dtype=self.dtype, device=self.device),
                                         modeling.load_tokenizer(folder), folder)
            except Exception as err:  # noqa: BLE001 - reported by every slot that needs this base
                self.found[key] = _one_line(err)
        found = self.found[key]
        if isinstance(found, str):
            raise RuntimeError(found)
        return found

    def in_use(self) -> list[Engine]:
        return [e for e in self.found.values() if isinstance(e, Engine) and e.slots]


def _serve_first(slot: str, spec: SlotSpec, load: Callable[[str, str, str], tuple[Path, str | None]]) -> SlotStatus:
    """Try the slot's configured model, then its fallback. `load(ref, revision, family)` makes the candidate ready to
    serve and returns (its folder, the base its family is built on), or raises. The status says which family serves
    and, for the fallback, why the configured model did not."""
    failures: list[str] = []
    for ref, revision, family in spec.candidates():
        try:
            folder, family_base = load(ref, revision, family)
        except Exception as err:  # noqa: BLE001 - any failure makes the candidate unavailable, never the app
            failures.append(_one_line(err) if not failures else f"fallback {ref}: {_one_line(err)}")
            continue
        note = f"fallback for {spec.ref}, which failed: {failures[0]}" if failures else None
        return SlotStatus(slot, ref, folder.name, folder, note=note, family=family, family_base=family_base)
    return SlotStatus(slot, spec.ref, error="; ".join(failures))


class ModelSet:
    """Loads the configured slots; `summarize` answers one request with one call per model in memory."""

    def __init__(self, config: ModelSetConfig | None = None, *, device: str | torch.device | None = None,
                 max_batch: int | None = None, batch_window_ms: float | None = None):
        """`max_batch` concurrent requests at most per micro-batch (1 = no batching; default $WORKBENCH_MAX_BATCH
        or 32), collected for `batch_window_ms` (default $WORKBENCH_BATCH_WINDOW_MS or 30)."""
        self.config = config or ModelSetConfig.load()
        self.device = resolve_device(device if device is not None else self.config.device)
        try:
            self.precision = modeling.serving_precision(self.config.dtype, self.device)
            self.compute_type = self._ct2_compute_type()
        except ValueError as err:
            raise ModelSetError(str(err)) from None
        self._converted: dict[Path, object] = {}  # CTranslate2 folder -> its loaded model (kept across reloads)
        max_batch = max_batch if max_batch is not None else int(_env_number(MAX_BATCH_ENV, 32, 1, 256))
        window = batch_window_ms if batch_window_ms is not None else _env_number(BATCH_WINDOW_ENV, 30, 0, 1000)
        self.batcher = _MicroBatcher(self._serve_locked, max_batch, window / 1000)
        self.dtype = self.precision.dtype  # what the activations compute in
        self.status: dict[str, SlotStatus] = self._unconfigured()
        self.engines: list[Engine] = []
        self.scorer = None
        self.scorer_error: str | None = None
        self.scorer_note: str | None = None  # why the fallback scorer serves, when it does
        self._logged: set[str] = set()
        self._lock = threading.Lock()
        self.load_seconds = 0.0
        self.reload()

    # -------------------------------------------------------------------------------------------- loading

    @property
    def slots(self) -> list[str]:
        """Every slot the app lists, in order: base, full, LoRA, PPO (configured or not), then the config's others."""
        return self.config.slot_names

    def label(self, slot: str) -> str:
        return self.config.label(slot)

    def _unconfigured(self) -> dict[str, SlotStatus]:
        return {s: SlotStatus(s, error="not configured", label=self.label(s)) for s in self.slots}

    def _ct2_compute_type(self) -> str | None:
        """The CTranslate2 compute type with engine ctranslate2 (None with torch); refused in one line when the
        package is missing or this device cannot compute the configured dtype."""
        if self.config.engine != "ctranslate2":
            return None
        from workbench import ct2engine

        return ct2engine.compute_type(self.config.dtype, str(self.device))

    @property
    def serving(self) -> str:
        """What computes the summaries, for headers and logs: the torch precision, or CTranslate2's compute type."""
        return f"CTranslate2 {self.compute_type}" if self.compute_type else str(self.precision)

    @property
    def batch_invariant(self) -> bool:
        """Whether a prompt's answer is the same alone and batched (micro-batching is on only then). CTranslate2
        masks padding and quantizes activations per row: on 96 demo test dialogues its int8 and fp32 outputs were
        identical alone, in batches of 8 and of 32 (tests/test_ct2engine.py checks it on every run)."""
        return self.config.engine == "ctranslate2" or self.precision.batch_invariant

    def reload(self) -> dict[str, SlotStatus]:
        """(Re)load every slot from the store or Hub, picking up new revisions. Safe to call while serving.

        Every adapter slot, however many the config names, is attached to its family's one base copy (they all run
        in the same mixed-adapter call); every `full` slot is a model of its own. With engine ctranslate2 every slot
        is a converted copy of its own (`_load_converted`)."""
        start = time.time()
        status = self._unconfigured()
        load = self._load_converted if self.config.engine == "ctranslate2" else self._load_torch
        engines = load(status)
        for slot, st in status.items():
            st.label = self.label(slot)
        scorer, scorer_error, scorer_note = self._load_scorer()
        with self._lock:  # swap everything at once; in-flight requests finish on the old models
            self.engines, self.status = engines, status
            self.scorer, self.scorer_error, self.scorer_note = scorer, scorer_error, scorer_note
        self.load_seconds = time.time() - start
        notes = [st.describe() for st in status.values() if st.note]
        for note in notes + ([f"toxicity scorer {scorer_note}"] if scorer_note else []):
            self._log_once(note)
        return status

    def _load_torch(self, status: dict[str, SlotStatus]) -> list[Engine]:
        """Fill `status` and return the engines: one base copy per family with its adapters attached, then every
        full model, prepared for the serving precision."""
        config, bases = self.config, _Bases(self.device, self.dtype)
        status["base"] = _serve_first("base", config.slots["base"], lambda r, v, f: self._load_base(bases, r, v))
        for slot in (s for s in config.slots if config.kind(s) == "adapter"):
            status[slot] = _serve_first(slot, config.slots[slot], lambda r, v, f, s=slot: self._load_adapter(
                bases, s, r, v, f))
        engines = bases.in_use()
        for engine in engines:
            engine.model = modeling.prepare_for_inference(engine.model, self.precision)
        for slot in (s for s in config.slots if config.kind(s) == "full"):
            full: list[Engine] = []
            status[slot] = _serve_first(slot, config.slots[slot], lambda r, v, f, s=slot: self._load_full(
                full, s, r, v, f))
            engines += full
        return engines

    def _load_converted(self, status: dict[str, SlotStatus]) -> list[Engine]:
        """Engine ctranslate2: fill `status` and return one engine per slot, each a converted copy (an adapter merged
        into a copy of its family's base). Copies already in memory are reused: a reload converts and loads only the
        slots whose revision (or whose base's revision) changed."""
        config, engines, served = self.config, [], []
        order = ["base", *(s for s in config.slots if config.kind(s) == "adapter"),
                 *(s for s in config.slots if config.kind(s) == "full")]
        for slot in order:
            status[slot] = _serve_first(slot, config.slots[slot], lambda r, v, f, s=slot: self._convert_slot(
                engines, served, s, r, v, f))
        in_use = {e.model.folder for e in engines}
        self._converted = {k: v for k, v in self._converted.items() if k in in_use}
        return engines

    def _convert_slot(self, out: list[Engine], served: list, slot: str, ref: str, revision: str,
                      family: str) -> tuple[Path, str | None]:
        """Convert (or find in the cache) one slot's model and load it; returns (its folder, its family's base)."""
        from workbench import ct2engine

        folder, kind = store.resolve(ref, revision), self.config.kind(slot)
        base_ref, model_folder, adapter, check = ref, folder, None, None
        if kind == "adapter":
            wanted = self.config.family_base(family) or _named_base(folder) or (served[0] if served else None)
            if wanted is None:
                raise RuntimeError("needs the base model, which did not load")
            try:
                model_folder = store.resolve(*wanted)
            except Exception as err:  # noqa: BLE001
                raise RuntimeError(f"runs on {wanted[0]}, which did not load: {_one_line(err)}") from None
            base_ref, adapter = wanted[0], folder
            check = lambda model: check_adapter_fits(model, folder, wanted[0])  # noqa: E731
        elif kind == "base":
            served.append((ref, revision))
        else:
            family_base = self.config.family_base(family)
            base_ref = family_base[0] if family_base else None
        converted = ct2engine.converted(model_folder, adapter, check=check, say=self._log_once)
        if converted not in self._converted:
            self._converted[converted] = ct2engine.Ct2Model(converted, modeling.load_tokenizer(model_folder),
                                                            compute_type=self.compute_type, device=str(self.device))
        model = self._converted[converted]
        out.append(Engine(model, model.tokenizer, folder, [slot]))
        return folder, base_ref

    def _log_once(self, message: str) -> None:
        """A fallback's reason goes to the log once per process, not at every reload."""
        if message not in self._logged:
            self._logged.add(message)
            log.warning("%s", message)

    def _load_base(self, bases: _Bases, ref: str, revision: str) -> tuple[Path, str]:
        engine = bases.get(ref, revision)
        engine.slots.insert(0, "base")
        bases.served = ref, revision
        return engine.folder, ref

    def _load_adapter(self, bases: _Bases, slot: str, ref: str, revision: str,
                      family: str) -> tuple[Path, str]:
        """Attach an adapter to the base of its family (loading that base if the base slot serves another one)."""
        folder = store.resolve(ref, revision)
        wanted = self.config.family_base(family) or _named_base(folder) or bases.served
        if wanted is None:
            raise RuntimeError("needs the base model, which did not load")
        try:
            engine = bases.get(*wanted)  # the base slot's own copy when it serves this family's base
        except RuntimeError as err:
            raise RuntimeError(f"runs on {wanted[0]}, which did not load: {err}") from None
        check_adapter_fits(engine.model, folder, wanted[0])
        engine.model = _attach(engine.model, slot, folder)
        engine.slots.append(slot)
        return folder, wanted[0]

    def _load_full(self, out: list[Engine], slot: str, ref: str, revision: str,
                   family: str) -> tuple[Path, str | None]:
        folder = store.resolve(ref, revision)
        model = modeling.load_model(folder, dtype=self.dtype, device=self.device)
        out.append(Engine(modeling.prepare_for_inference(model, self.precision), modeling.load_tokenizer(folder),
                          folder, [slot]))
        family_base = self.config.family_base(family)
        return folder, family_base[0] if family_base else None

    def _load_scorer(self) -> tuple[object | None, str | None, str | None]:
        """(scorer, error, note): the configured toxicity scorer, else its fallback. `error` when none loads; `note`
        when the fallback serves, saying why the configured one did not (the header and the Toxicity tab show it)."""
        failures: list[str] = []
        for spec in filter(None, (self.config.toxicity, self.config.toxicity_fallback)):
            try:
                scorer = toxicity.load_scorer(spec, device=str(self.device))
            except Exception as err:  # noqa: BLE001
                failures.append(f"{spec}: {_one_line(err)}")
                continue
            note = f"{failures[0]} — scoring with {spec} instead" if failures else None
            return scorer, None, note
        return None, "; ".join(failures) or "no toxicity scorer configured", None

    # -------------------------------------------------------------------------------------------- serving

    @property
    def available(self) -> list[str]:
        return [s for s in self.slots if self.status[s].ok]

    def engine_of(self, slot: str) -> Engine | None:
        """The model in memory that serves `slot` (None when the slot is unavailable)."""
        ok = slot in self.status and self.status[slot].ok
        return next((e for e in self.engines if slot in e.slots), None) if ok else None

    def _served(self, slot: str, part: str):
        engine = self.engine_of(slot)
        return getattr(engine, part) if engine else None

    # The base slot's model is a PeftModel when its family's adapters are attached to it.
    base_model = property(lambda self: self._served("base", "model"))
    full_model = property(lambda self: self._served("full", "model"))
    tokenizer = property(lambda self: self._served("base", "tokenizer"))
    full_tokenizer = property(lambda self: self._served("full", "tokenizer"))

    @property
    def max_input_tokens(self) -> int:
        from workbench.generation import model_input_limit

        return model_input_limit(self.tokenizer) if self.tokenizer is not None else 512

    def call_groups(self, slots: Sequence[str]) -> list[list[str]]:
        """`slots` (available ones) grouped by the model that serves them: each group is one generate call."""
        return [group for group in ([s for s in slots if s in e.slots] for e in self.engines) if group]

    def summarize(self, prompts_by_slot: dict[str, str], settings: GenerationSettings = GenerationSettings(),
                  *, seed: int | None = None) -> dict[str, Summary]:
        """Generate for each requested slot: one call per model in memory (one mixed-adapter call for base/LoRA/PPO
        when they share a base copy, one for the full model).

        `prompts_by_slot` maps slot -> prompt (normally the same prompt for all). Unavailable slots get an error.
        Deterministic requests (greedy, beam search) from concurrent callers are micro-batched (`_MicroBatcher`):
        requests that arrive within a short window and share generation settings run in the same calls, and each
        gets exactly the answer it would have got alone. Sampling requests run alone (their seed fixes the random
        stream of their own call).
        """
        request = _Request(prompts_by_slot)
        for slot in prompts_by_slot:
            if slot not in self.status:
                raise ValueError(f"unknown slot {slot!r}")
            if not self.status[slot].ok:
                request.out[slot] = Summary(slot, None, 0.0, self.status[slot].error)
        if len(request.out) < len(prompts_by_slot):
            if settings.do_sample or not self.batcher.enabled or not self.batch_invariant:
                with self._lock:
                    self._serve([request], settings, seed=seed)
            else:
                self.batcher.submit(request, settings)
        return {s: request.out[s] for s in prompts_by_slot}

    def _serve_locked(self, requests: Sequence[_Request], settings: GenerationSettings) -> None:
        """A batch for the micro-batcher; afterwards freed heap goes back to the OS (batches of varying sizes leave
        glibc holding freed blocks otherwise: the server's RSS kept growing under load)."""
        with self._lock:
            self._serve(requests, settings)
        if len(requests) > 1:
            modeling.release_free_memory()

    def _serve(self, requests: Sequence[_Request], settings: GenerationSettings, *, seed: int | None = None) -> None:
        """Answer `requests` (the lock held): per model in memory and per prompt length bucket, one generate call over
        every request's rows. Prompts are padded to their bucket (`generation.length_bucket`) alone and batched
        alike, so that a request's shapes, hence its rounding and its answer, do not depend on its neighbours."""
        from collections import defaultdict

        from workbench.generation import length_bucket, model_input_limit

        for engine in self.engines:
            rows = [(r, s) for r in requests for s in r.prompts if s in engine.slots and s not in r.out]
            if not rows:
                continue
            limit = model_input_limit(engine.tokenizer)
            lengths = [len(ids) for ids in encode(engine.tokenizer, [r.prompts[s] for r, s in rows], truncation=True,
                                                  max_length=limit).input_ids]
            buckets: dict[int, list] = defaultdict(list)
            for row, n in zip(rows, lengths):
                buckets[length_bucket(n, SERVE_PAD)].append(row)
            for group in buckets.values():
                start = time.time()
                texts = engine.generate([s for _, s in group], [r.prompts[s] for r, s in group], settings, seed=seed,
                                        batch_size=len(group), pad_to_multiple_of=SERVE_PAD)
                elapsed = time.time() - start
                for (r, s), text in zip(group, texts):
                    r.out[s] = Summary(s, text, elapsed)
        for r in requests:  # a slot whose model went away in a reload meanwhile
            for s in r.prompts:
                r.out.setdefault(s, Summary(s, None, 0.0, "unavailable after a reload"))

    def generate_batch(self, slot: str, prompts: Sequence[str], settings: GenerationSettings = GenerationSettings(),
                       *, batch_size: int = 16) -> list[str]:
        """Many prompts through one slot, batched and length-sorted."""
        return self.generate_slots([slot], prompts, settings, batch_size=batch_size)[slot]

    def generate_slots(self, slots: Sequence[str], prompts: Sequence[str],
                       settings: GenerationSettings = GenerationSettings(), *, batch_size: int = 16
                       ) -> dict[str, list[str]]:
        """Every prompt through each of `slots` (batch toxicity runs, evaluation): {slot: outputs in prompt order}.

        The slots one base copy serves (base, LoRA, PPO) share one mixed-adapter generate call, `batch_size` prompts
        per slot in each batch: one pass over the base weights per decoding step serves all three. The full model,
        and a second family's base, are separate calls.
        """
        for slot in slots:
            if slot not in self.status:
                raise ValueError(f"unknown slot {slot!r}")
            if not self.status[slot].ok:
                raise ValueError(f"{self.label(slot)} is unavailable: {self.status[slot].error}")
        out: dict[str, list[str]] = {}
        with self._lock:
            for engine in sorted(self.engines, key=lambda e: "base" in e.slots):  # full models first, as always
                group = [s for s in slots if s in engine.slots]
                if not group:
                    continue
                texts = engine.generate([s for s in group for _ in prompts], [p for _ in group for p in prompts],
                                        settings, batch_size=batch_size * len(group))
                for i, slot in enumerate(group):
                    out[slot] = texts[i * len(prompts): (i + 1) * len(prompts)]
        return {slot: out[slot] for slot in slots}

    def score(self, texts: Sequence[str]) -> list[float] | None:
        return self.scorer.score(list(texts)) if self.scorer is not None else None


_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.(?P<kind>lora_A|lora_B)\.weight$")


def check_adapter_fits(model, folder: Path, base_ref: str) -> None:
    """Refuse an adapter whose LoRA matrices do not fit the base's layers, before peft touches the model.

    peft wraps the base's layers first and loads the adapter's weights after, so a misfit (a FLAN-T5-base adapter on
    the demo base, or the reverse) fails halfway, leaves LoRA layers the adapter never filled in on the shared base
    copy, and says only "Error(s) in loading state_dict". The safetensors header is enough to check every shape and
    name the misfit.
    """
    from safetensors import safe_open

    path = Path(folder) / "adapter_model.safetensors"
    if not path.is_file():
        return  # peft says what is missing
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            match = _LORA_KEY.match(key)
            if not match:
                continue
            try:
                layer = core.get_submodule(match["module"])
            except AttributeError:
                raise ValueError(f"adapter targets {match['module']}, which {base_ref} does not have: it was trained "
                                 "for a base of another architecture") from None
            shape = handle.get_slice(key).get_shape()
            want, have = (shape[1], getattr(layer, "in_features", None)) if match["kind"] == "lora_A" else \
                (shape[0], getattr(layer, "out_features", None))
            if have is not None and want != have:
                raise ValueError(f"adapter does not fit {base_ref}: {match['module']} has {have} features there, the "
                                 f"adapter expects {want} (it was trained for a base of another size)")


def _named_base(folder: Path) -> tuple[str, str] | None:
    """(ref, "main") of the base an adapter names in adapter_config.json, when that is a store name or Hub id: what
    a fallback adapter runs on when the base slot names no fallback of its own."""
    import json

    try:
        named = json.loads((Path(folder) / "adapter_config.json").read_text()).get("base_model_name_or_path")
        return store.validate_repo_id(named), "main"
    except (OSError, ValueError, AttributeError, store.StoreError):
        return None


def _attach(model, name: str, folder: Path):  # with the adapter's own minimum length, if it has one
    return modeling.attach_adapter(model, folder, name).eval()


def _one_line(err: BaseException, limit: int = 400) -> str:
    """The first line of an error, cut at a word boundary (with …) past `limit` characters."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"
