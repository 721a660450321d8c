"""The four models the workbench compares, loaded once: base, full fine-tune, LoRA and PPO.

Base, LoRA and PPO share ONE copy of the base weights: the adapters are attached to it with peft and every request
runs them in a single mixed-adapter batch (`adapter_names=["__base__", "lora", "ppo"]`). No `set_adapter` is ever
called, so no request changes what another one sees. peft implements `adapter_names` with forward hooks registered
for the duration of a call, so calls into one model are serialised with a lock (on two CPU cores, running them in
parallel would not be faster anyway). The full fine-tune is a separate model.

A slot that is missing or fails to load is reported with its reason; the others keep working.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from workbench import modeling, paths, store, toxicity
from workbench.generation import BASE_ADAPTER, GenerationSettings, generate

SLOTS = ("base", "full", "lora", "ppo")
DTYPES = ("auto", "int8", "fp32", "bf16", "fp16")  # how the app serves; see modeling.serving_precision
ADAPTER_SLOTS = ("lora", "ppo")
LABELS = {"base": "Base (zero-shot)", "full": "Full fine-tune", "lora": "LoRA", "ppo": "PPO (detoxified LoRA)"}
DEFAULT_CONFIG = paths.REPO_ROOT / "configs" / "models" / "demo.yaml"


class ModelSetError(ValueError):
    """The models config is malformed."""


@dataclasses.dataclass(frozen=True)
class SlotSpec:
    ref: str
    revision: str = "main"
    fallback: str | None = None


@dataclasses.dataclass(frozen=True)
class ModelSetConfig:
    slots: dict[str, SlotSpec]
    toxicity: str = "profanity-check"
    toxicity_fallback: str | None = None
    dtype: str = "auto"

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
        known = set(SLOTS) | {"toxicity", "toxicity_fallback", "dtype"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ModelSetError(f"{path}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
        slots = {}
        for slot in SLOTS:
            entry = raw.get(slot)
            if entry is None:
                continue
            if isinstance(entry, str):
                entry = {"ref": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("ref"), str):
                raise ModelSetError(f"{path}: {slot}: expected {{ref: NAME, revision: REV}}")
            extra = sorted(set(entry) - {"ref", "revision", "fallback"})
            if extra:
                raise ModelSetError(f"{path}: {slot}: unknown key(s) {', '.join(extra)}")
            slots[slot] = SlotSpec(entry["ref"], str(entry.get("revision", "main")), entry.get("fallback"))
        if "base" not in slots:
            raise ModelSetError(f"{path}: the base slot is required")
        dtype = str(raw.get("dtype", "auto"))
        if dtype not in DTYPES:
            raise ModelSetError(f"{path}: dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
        return cls(slots=slots, toxicity=str(raw.get("toxicity", "profanity-check")),
                   toxicity_fallback=raw.get("toxicity_fallback"), dtype=dtype)


@dataclasses.dataclass
class SlotStatus:
    slot: str
    ref: str | None = None
    revision: str | None = None
    folder: Path | None = None
    error: str | None = None
    note: str | None = None  # e.g. why the fallback is served instead of the configured model

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        if self.ok:
            note = f" ({self.note})" if self.note else ""
            return f"{LABELS[self.slot]}: {self.ref} @ {str(self.revision)[:12]}{note}"
        return f"{LABELS[self.slot]}: unavailable — {self.error}"


@dataclasses.dataclass
class Summary:
    slot: str
    text: str | None
    seconds: float
    error: str | None = None


def _resolve(spec: SlotSpec) -> tuple[str, Path, str | None]:
    """The folder for a slot, trying its fallback when the primary cannot be had.

    Returns (ref used, folder, note); the note says why the fallback is served, so the UI can show it."""
    try:
        return spec.ref, store.resolve(spec.ref, spec.revision), None
    except store.StoreError as primary:
        if not spec.fallback:
            raise
        try:
            folder = store.resolve(spec.fallback, "main")
        except store.StoreError:
            raise primary from None
        return spec.fallback, folder, f"fallback for {spec.ref}, which failed: {_one_line(primary)}"


def _revision_of(folder: Path) -> str:
    return folder.name


class ModelSet:
    """Loads the configured slots; `summarize` answers one request with one call per underlying model."""

    def __init__(self, config: ModelSetConfig | None = None, *, device: str | None = None):
        self.config = config or ModelSetConfig.load()
        self.device = device
        self.precision = modeling.serving_precision(self.config.dtype, device)
        self.dtype = self.precision.dtype  # what the activations compute in
        self.status: dict[str, SlotStatus] = {s: SlotStatus(s, error="not configured") for s in SLOTS}
        self.base_model = None  # PeftModel with adapters, or the plain base model
        self.full_model = None
        self.tokenizer = None
        self.full_tokenizer = None
        self.scorer = None
        self.scorer_error: str | None = None
        self._lock = threading.Lock()
        self.load_seconds = 0.0
        self.reload()

    # -------------------------------------------------------------------------------------------- loading

    def reload(self) -> dict[str, SlotStatus]:
        """(Re)load every slot from the store or Hub, picking up new revisions. Safe to call while serving."""
        start = time.time()
        status = {s: SlotStatus(s, error="not configured") for s in SLOTS}
        base_model = full_model = tokenizer = full_tokenizer = None
        specs = self.config.slots
        if "base" in specs:
            try:
                ref, folder, note = _resolve(specs["base"])
                tokenizer = modeling.load_tokenizer(folder)
                base_model = modeling.load_model(folder, dtype=self.dtype, device=self.device)
                status["base"] = SlotStatus("base", ref, _revision_of(folder), folder, note=note)
            except Exception as err:  # noqa: BLE001 - any failure makes the slot unavailable, never the app
                status["base"] = SlotStatus("base", specs["base"].ref, error=_one_line(err))
        adapters = {}
        for slot in ADAPTER_SLOTS:
            if slot not in specs:
                continue
            if base_model is None:
                status[slot] = SlotStatus(slot, specs[slot].ref, error="needs the base model, which did not load")
                continue
            try:
                ref, folder, note = _resolve(specs[slot])
                adapters[slot] = folder
                status[slot] = SlotStatus(slot, ref, _revision_of(folder), folder, note=note)
            except Exception as err:  # noqa: BLE001
                status[slot] = SlotStatus(slot, specs[slot].ref, error=_one_line(err))
        for slot, folder in list(adapters.items()):
            try:
                base_model = self._attach(base_model, slot, folder)
            except Exception as err:  # noqa: BLE001
                status[slot] = SlotStatus(slot, status[slot].ref, error=_one_line(err))
        if base_model is not None:
            base_model = modeling.prepare_for_inference(base_model, self.precision)
        if "full" in specs:
            try:
                ref, folder, note = _resolve(specs["full"])
                full_tokenizer = modeling.load_tokenizer(folder)
                full_model = modeling.prepare_for_inference(
                    modeling.load_model(folder, dtype=self.dtype, device=self.device), self.precision)
                status["full"] = SlotStatus("full", ref, _revision_of(folder), folder, note=note)
            except Exception as err:  # noqa: BLE001
                status["full"] = SlotStatus("full", specs["full"].ref, error=_one_line(err))
        scorer, scorer_error = self._load_scorer()
        with self._lock:  # swap everything at once; in-flight requests finish on the old models
            self.base_model, self.full_model = base_model, full_model
            self.tokenizer, self.full_tokenizer = tokenizer, full_tokenizer
            self.status, self.scorer, self.scorer_error = status, scorer, scorer_error
        self.load_seconds = time.time() - start
        return status

    @staticmethod
    def _attach(model, name: str, folder: Path):
        from peft import PeftModel

        if isinstance(model, PeftModel):
            model.load_adapter(str(folder), adapter_name=name, use_safetensors=True)
            return model.eval()
        return PeftModel.from_pretrained(model, str(folder), adapter_name=name, use_safetensors=True).eval()

    def _load_scorer(self):
        for spec in filter(None, (self.config.toxicity, self.config.toxicity_fallback)):
            try:
                return toxicity.load_scorer(spec), None
            except Exception as err:  # noqa: BLE001
                error = f"{spec}: {_one_line(err)}"
        return None, error

    # -------------------------------------------------------------------------------------------- serving

    @property
    def available(self) -> list[str]:
        return [s for s in SLOTS if self.status[s].ok]

    @property
    def max_input_tokens(self) -> int:
        from workbench.generation import model_input_limit

        return model_input_limit(self.tokenizer) if self.tokenizer is not None else 512

    def summarize(self, prompts_by_slot: dict[str, str], settings: GenerationSettings = GenerationSettings(),
                  *, seed: int | None = None) -> dict[str, Summary]:
        """Generate for each requested slot: one mixed-adapter call for base/LoRA/PPO, one call for the full model.

        `prompts_by_slot` maps slot -> prompt (normally the same prompt for all). Unavailable slots get an error.
        """
        out: dict[str, Summary] = {}
        for slot in prompts_by_slot:
            if slot not in SLOTS:
                raise ValueError(f"unknown slot {slot!r}")
            if not self.status[slot].ok:
                out[slot] = Summary(slot, None, 0.0, self.status[slot].error)
        family = [s for s in prompts_by_slot if s != "full" and s not in out]
        with self._lock:
            if family:
                names = [BASE_ADAPTER if s == "base" else s for s in family]
                start = time.time()
                texts = self._generate(self.base_model, self.tokenizer, [prompts_by_slot[s] for s in family],
                                       settings, names, seed)
                elapsed = time.time() - start
                out.update({s: Summary(s, t, elapsed) for s, t in zip(family, texts)})
            if "full" in prompts_by_slot and "full" not in out:
                start = time.time()
                [text] = generate(self.full_model, self.full_tokenizer, [prompts_by_slot["full"]], settings, seed=seed)
                out["full"] = Summary("full", text, time.time() - start)
        return {s: out[s] for s in prompts_by_slot}

    def _generate(self, model, tokenizer, prompts: Sequence[str], settings, names: list[str], seed):
        from peft import PeftModel

        if isinstance(model, PeftModel):
            return generate(model, tokenizer, prompts, settings, adapter_names=names, seed=seed)
        return generate(model, tokenizer, prompts, settings, seed=seed)  # base only: no adapters attached

    def generate_batch(self, slot: str, prompts: Sequence[str], settings: GenerationSettings = GenerationSettings(),
                       *, batch_size: int = 16) -> list[str]:
        """Many prompts through one slot, batched and length-sorted."""
        return self.generate_slots([slot], prompts, settings, batch_size=batch_size)[slot]

    def generate_slots(self, slots: Sequence[str], prompts: Sequence[str],
                       settings: GenerationSettings = GenerationSettings(), *, batch_size: int = 16
                       ) -> dict[str, list[str]]:
        """Every prompt through each of `slots` (batch toxicity runs, evaluation): {slot: outputs in prompt order}.

        The adapter family (base, LoRA, PPO) shares one mixed-adapter generate call, `batch_size` prompts per slot
        in each batch: one pass over the base weights per decoding step serves all three. The full model is separate.
        """
        for slot in slots:
            if not self.status[slot].ok:
                raise ValueError(f"{LABELS[slot]} is unavailable: {self.status[slot].error}")
        out: dict[str, list[str]] = {}
        family = [s for s in slots if s != "full"]
        with self._lock:
            if "full" in slots:
                out["full"] = generate(self.full_model, self.full_tokenizer, prompts, settings, batch_size=batch_size)
            if family:
                from peft import PeftModel

                names = None
                if isinstance(self.base_model, PeftModel):
                    names = [BASE_ADAPTER if s == "base" else s for s in family for _ in prompts]
                texts = generate(self.base_model, self.tokenizer, [p for _ in family for p in prompts], settings,
                                 adapter_names=names, batch_size=batch_size * len(family))
                for i, slot in enumerate(family):
                    out[slot] = texts[i * len(prompts): (i + 1) * len(prompts)]
        return {slot: out[slot] for slot in slots}

    def score(self, texts: Sequence[str]) -> list[float] | None:
        return self.scorer.score(list(texts)) if self.scorer is not None else None


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:300]
