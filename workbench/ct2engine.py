"""CTranslate2 as an optional inference engine: a store revision (a full model, or a base with a LoRA adapter merged
into a copy) converted once into a CTranslate2 folder, cached by revision hash, and served greedy or beam search with
the semantics of `workbench.generation.generate`.

Why: CTranslate2 runs T5 with its own int8 CPU kernels (int8 weights and activations, fp32 accumulation), which on
the machines here decode several times faster than PyTorch. The PyTorch + peft path stays the default wherever
outputs must match training exactly; this one is chosen with `engine: ctranslate2` in a models config or
`--engine ctranslate2` in `python -m trainers.evaluate`. The package is optional at runtime: it is imported only
when the engine is asked for, and its absence is one clear line.

Conversion. ctranslate2's converter reads a transformers-5 T5 checkpoint, but it decides whether to scale the decoder
output by d_model**-0.5 from `config.tie_word_embeddings`, which transformers 5 now always sets to True (the meaning
moved to `config.scale_decoder_outputs`). FLAN-T5 and the demo family have an untied lm_head and no output scaling:
converted as is, every logit came out d_model**-0.5 times too small (log-probabilities off by up to 7.8 nats on the
demo full model; greedy search hides it, beam search and sampling do not). `_for_converter` restores the old meaning
on the in-memory copy the converter reads; the separate lm_head itself is converted correctly.

Caching. A converted copy lives under `cache_dir()/<key>`, the key hashing the revision (a store revision or a Hub
commit is named by the hash of its files), the adapter's revision when merged, and the ctranslate2 version. A
converted copy is stored in fp32 and quantized when it is loaded (`compute_type`), so one copy serves every precision.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from workbench.generation import GenerationSettings, model_copy_bias, model_input_limit
from workbench.tokenizing import encode

CACHE_ENV = "WORKBENCH_CT2_CACHE"
CONVERSION_VERSION = "1"  # bump when the conversion itself changes, so stale copies are not reused
# The models config's dtype names -> CTranslate2 compute types per device kind ("auto": the fastest that holds
# quality: int8 weights and activations with fp32 accumulation on CPU, int8 weights with fp16 compute on CUDA).
COMPUTE_TYPES = {
    "cpu": {"auto": "int8", "int8": "int8", "int8-dynamic": "int8", "fp32": "float32", "bf16": "bfloat16",
            "fp16": "float16"},
    "cuda": {"auto": "int8_float16", "int8": "int8_float16", "int8-dynamic": "int8_float16", "fp32": "float32",
             "bf16": "bfloat16", "fp16": "float16"},
}
_REVISION_NAME = re.compile(r"^([0-9a-f]{12}|[0-9a-f]{40})$")  # LocalStore content hash, Hub commit
_CONVERT_LOCK = threading.Lock()
# transformers' beam search (early_stopping=False) goes on while a running beam could still beat the finished ones;
# CTranslate2 stops once beam_size * patience hypotheses have finished. With patience 1, 75 of 80 demo test summaries
# (4 beams, fp32) equalled transformers'; with 2 and 4, 78; with 8 (and 16, 100), all 80.
BEAM_PATIENCE = 8.0


class EngineError(ValueError):
    """The engine cannot do what was asked (not installed, an unsupported setting or precision)."""


def require():
    """The ctranslate2 module, imported on first use; one line saying how to get it otherwise."""
    try:
        import ctranslate2
    except ImportError:
        raise EngineError("engine ctranslate2: the ctranslate2 package is not installed (pip install ctranslate2), "
                          "or use engine: torch") from None
    return ctranslate2


def cache_dir() -> Path:
    """Where converted copies go: $WORKBENCH_CT2_CACHE, else the user's cache folder (never the committed store)."""
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser().resolve()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "workbench" / "ctranslate2"


def revision_key(folder: Path) -> str:
    """The hash naming a model folder's contents: its name for a store revision or Hub snapshot, else the hash of its
    files (a plain folder given to a trainer CLI)."""
    folder = Path(folder)
    if _REVISION_NAME.match(folder.name):
        return folder.name
    from workbench import store

    return store.content_hash(folder)


def cache_key(model: Path, adapter: Path | None = None) -> str:
    """The cache folder's name for `model` (with `adapter` merged): changes whenever either revision changes."""
    ct2 = require()
    parts = [revision_key(model), revision_key(adapter) if adapter else "-", ct2.__version__, CONVERSION_VERSION]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def converted(model: Path, adapter: Path | None = None, *, check: Callable | None = None,
              say: Callable[[str], None] | None = None) -> Path:
    """The CTranslate2 folder of `model` (a full model or base folder), with `adapter` merged into a copy: converted on
    first use (one progress line before, one after), then reused from the cache. `check(base_model)` runs before the
    adapter is attached (ModelSet refuses a misfit adapter with a clear line there)."""
    out = cache_dir() / cache_key(model, adapter)
    if (out / "model.bin").is_file():
        return out
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    what = f"{Path(model).name}" + (f" + adapter {Path(adapter).name}" if adapter else "")
    with _CONVERT_LOCK:
        if (out / "model.bin").is_file():  # another thread converted it meanwhile
            return out
        say(f"converting {what} to CTranslate2 (once per revision) …")
        start = time.time()
        _convert(model, adapter, out, check)
        say(f"converted {what} in {time.time() - start:.1f} s")
    return out


def _convert(model: Path, adapter: Path | None, out: Path, check: Callable | None) -> None:
    """Convert into a staging folder next to `out`, then move it in: a half-written copy is never found."""
    ct2 = require()
    torch_model = _merged(model, adapter, check)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    try:
        converter = _in_memory_converter(ct2, torch_model, model)
        converter.convert(str(staging), quantization="float32", force=True)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _merged(model: Path, adapter: Path | None, check: Callable | None):
    """The fp32 torch model the converter reads: the model itself, or the base with the adapter merged in."""
    from workbench import modeling

    base = modeling.load_model(model, dtype="fp32", device="cpu")
    if bias := model_copy_bias(base):
        raise EngineError(f"engine ctranslate2: {Path(model).name} decodes with a copy bias (config.copy_bias "
                          f"{bias:g}; every adapter on it too), which only the torch engine applies; serve it with "
                          "engine: torch")
    if adapter is None:
        return _for_converter(base)
    from peft import PeftModel

    if check is not None:
        check(base)
    with modeling.untied_head_adapters(base):
        peft_model = PeftModel.from_pretrained(base, str(adapter), use_safetensors=True)
    return _for_converter(peft_model.merge_and_unload())


def _for_converter(model):
    """Give the converter the transformers-4 meaning of tie_word_embeddings ("scale the decoder output"), which
    transformers 5 keeps in scale_decoder_outputs (see the module docstring). Only this throwaway copy is changed."""
    scale = getattr(model.config, "scale_decoder_outputs", None)
    if scale is not None:
        model.config.tie_word_embeddings = bool(scale)
    return model


def _in_memory_converter(ct2, torch_model, folder: Path):
    """ctranslate2's TransformersConverter reading an already loaded (merged) model instead of loading the folder;
    the folder still gives the config and the tokenizer (the vocabulary)."""

    class InMemory(ct2.converters.TransformersConverter):
        def load_model(self, model_class, model_name_or_path, **kwargs):
            return torch_model

    return InMemory(str(folder))


def compute_type(dtype: str, device: str = "cpu") -> str:
    """The CTranslate2 compute type for a models-config dtype on `device`, refused in one line if unsupported."""
    ct2 = require()
    kind = device.split(":")[0]
    wanted = COMPUTE_TYPES.get(kind, {}).get(dtype)
    supported = ct2.get_supported_compute_types(kind) if kind in COMPUTE_TYPES else set()
    if wanted is None or wanted not in supported:
        raise EngineError(f"engine ctranslate2: dtype {dtype} on {device} is not supported here (this machine's "
                          f"CTranslate2 computes {', '.join(sorted(supported)) or 'nothing'} on {kind})")
    return wanted


class Ct2Model:
    """One converted model loaded for generation, with the tokenizer that maps text to its tokens and back."""

    def __init__(self, folder: Path, tokenizer, *, compute_type: str = "int8", device: str = "cpu",
                 threads: int | None = None):
        import torch

        ct2 = require()
        kind, _, index = device.partition(":")
        self.folder, self.tokenizer, self.compute_type = Path(folder), tokenizer, compute_type
        self.translator = ct2.Translator(str(folder), device=kind, device_index=int(index or 0),
                                         compute_type=compute_type, inter_threads=1,
                                         intra_threads=threads or torch.get_num_threads())

    def generate(self, prompts: Sequence[str], settings: GenerationSettings = GenerationSettings(), *,
                 batch_size: int = 16, max_input_tokens: int | None = None, seed: int | None = None) -> list[str]:
        """One text per prompt, in order: tokenized, truncated and decoded exactly as `generation.generate` does
        (CTranslate2 sorts by length and batches `batch_size` prompts itself). The settings alone decide: a model's
        own generation_config (e.g. the minimum length `generation.model_min_new_tokens` reads) is not converted;
        the demo family, which carries one, is refused for its copy bias before it gets here."""
        if not prompts:
            return []
        options = decoding_options(settings)
        if seed is not None:
            require().set_random_seed(seed)
        limit = max_input_tokens or model_input_limit(self.tokenizer)
        ids = encode(self.tokenizer, list(prompts), truncation=True, max_length=limit).input_ids
        tokens = [self.tokenizer.convert_ids_to_tokens(row) for row in ids]
        results = self.translator.translate_batch(tokens, max_batch_size=batch_size, **options)
        out = [self.tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
        return [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


def decoding_options(settings: GenerationSettings) -> dict:
    """translate_batch options with GenerationSettings' meaning (transformers' generate): max/min_new_tokens count
    generated tokens like max/min_decoding_length; greedy is beam_size 1; beam search gets BEAM_PATIENCE. Sampling
    draws from CTranslate2's own random stream (the same distribution as torch, other draws). What still differs:
    with beam search, transformers applies repetition_penalty and no_repeat_ngram_size to log-probabilities (a banned
    token's share is not handed to the others), CTranslate2 to logits, so beam search with either can end differently
    (greedy cannot: the best token is the same). Beam sampling is refused: CTranslate2 samples only with
    beam_size 1."""
    if settings.do_sample and settings.num_beams > 1:
        raise EngineError("engine ctranslate2: sampling with beam search (do_sample with num_beams > 1) is not "
                          "supported; use num_beams 1 or engine torch")
    if settings.copy_bias:
        raise EngineError("engine ctranslate2: copy_bias is applied by the torch engine only; set it to 0 or use "
                          "engine torch")
    options = dict(beam_size=settings.num_beams, max_decoding_length=settings.max_new_tokens,
                   min_decoding_length=settings.min_new_tokens, repetition_penalty=settings.repetition_penalty,
                   no_repeat_ngram_size=settings.no_repeat_ngram_size)
    if settings.num_beams > 1:
        options["patience"] = BEAM_PATIENCE
    if settings.do_sample:
        options.update(sampling_topk=settings.top_k, sampling_topp=settings.top_p,
                       sampling_temperature=settings.temperature)
    return options
