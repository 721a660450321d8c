"""Models and tokenizers: the demo family's FLAN-T5-shaped architecture, its tokenizer, and safe loading.

One loader serves the app, the trainers and the evaluator. Weights are read as safetensors only and
`trust_remote_code` is never set.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

# FLAN-T5's architecture (T5 v1.1: gated-GELU feed-forward, untied lm_head, no decoder-output scaling), scaled
# down so that the demo family trains on two CPU cores and ships in a few megabytes.
DEMO_ARCHITECTURE = dict(
    d_model=256,
    d_ff=640,
    d_kv=64,
    num_heads=4,
    num_layers=3,
    num_decoder_layers=3,
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.1,
    layer_norm_epsilon=1e-6,
)
SENTINELS = 100
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5


def quiet_transformers() -> None:
    """Silence the harmless 'will NOT tie them' notice printed when loading an untied lm_head."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)


# ---------------------------------------------------------------------------------------------------- devices


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 matmuls are faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def best_dtype(device: torch.device | str | None = None) -> torch.dtype:
    """The fastest precision that the hardware computes natively: bf16 where supported, else fp32."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def resolve_dtype(name: str | torch.dtype | None, device: torch.device | str | None = None) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name in (None, "auto"):
        return best_dtype(device)
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"unknown dtype {name!r} (use auto, fp32, bf16 or fp16)")
    return table[name]


# ---------------------------------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000, extra_texts: Iterable[str] = (),
                    min_word_count: int = 2):
    """Train a T5 tokenizer (Unigram, the pipeline T5Tokenizer rebuilds on load) with T5's special ids.

    `<pad>`=0, `</s>`=1, `<unk>`=2, the learned pieces, then `<extra_id_99>` ... `<extra_id_0>` (last id), like T5.
    The pre-tokenizer is exactly T5Tokenizer's (WhitespaceSplit + Metaspace, no normalizer) so that ids survive a
    save/load round trip.

    On a small corpus the Unigram trainer stops at a few hundred subword pieces and spells common words in two or
    three of them ("▁cl ient", "▁#Person 1 #"). SentencePiece on a large corpus keeps frequent words whole, so every
    word seen at least `min_word_count` times is added as a piece scored by its unigram log-frequency: FLAN-T5-like
    ~1.3 tokens per word instead of ~2.2, and speaker tags such as `#Person1#` become single pieces.
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    texts = [*texts, *extra_texts]
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    alphabet = [chr(c) for c in range(33, 127)]  # every printable ASCII character stays representable
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - SENTINELS,
        special_tokens=SPECIAL_TOKENS,
        unk_token="<unk>",
        initial_alphabet=alphabet,
        max_piece_length=16,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    pieces = dict(json.loads(backend.to_str())["model"]["vocab"])  # specials first, then learned pieces
    words = Counter(word.rstrip(".,!?;:\"") for text in texts for word in text.split())
    total = sum(words.values())
    frequent = sorted(((f"▁{w}", math.log(c / total)) for w, c in words.items()
                       if w and c >= min_word_count and f"▁{w}" not in pieces), key=lambda item: -item[1])
    room = vocab_size - SENTINELS - len(pieces)
    pieces.update(frequent[: max(room, 0)])
    vocab = list(pieces.items()) + [(f"<extra_id_{i}>", 0.0) for i in range(SENTINELS - 1, -1, -1)]
    return T5Tokenizer(vocab=vocab, extra_ids=SENTINELS, model_max_length=512)


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


# ---------------------------------------------------------------------------------------------------- models


def demo_config(vocab_size: int, **overrides):
    """A T5Config with FLAN-T5's architecture at demo scale (overrides for tiny test models)."""
    from transformers import T5Config

    arch = {**DEMO_ARCHITECTURE, **overrides}
    # tie_word_embeddings=False is how T5 v1.1 / FLAN-T5 configs say "do not scale decoder outputs".
    return T5Config(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                    tie_word_embeddings=False, **arch)


def build_model(config, seed: int = 0):
    """A randomly initialised T5ForConditionalGeneration with its own (untied) lm_head, as in FLAN-T5."""
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    # transformers ties lm_head to the shared embedding for every T5; give it a separate, small-scale weight
    # (a std-1 head starts at a loss near 30).
    head = torch.empty(config.vocab_size, config.d_model).normal_(std=config.d_model**-0.5)
    model.lm_head.weight = nn.Parameter(head)
    return model


def load_model(path: str | Path, *, dtype: str | torch.dtype | None = "fp32", device: str | None = None):
    """A seq2seq model from a local folder (a store revision): safetensors only, no remote code, eval mode."""
    from transformers import AutoModelForSeq2SeqLM

    quiet_transformers()
    device = torch.device(device) if device else default_device()
    model = AutoModelForSeq2SeqLM.from_pretrained(
        str(path), dtype=resolve_dtype(dtype, device), use_safetensors=True, trust_remote_code=False
    )
    return fuse_gelu(model).to(device).eval()


def fuse_gelu(model):
    """Swap FLAN-T5's `gelu_new` (the tanh-approximate GELU written as eight elementwise ops) for PyTorch's fused
    kernel of the same formula (`gelu(approximate="tanh")`, transformers' "gelu_pytorch_tanh"): equal up to rounding,
    one pass over the feed-forward activations instead of eight. Training and inference alike; the config is untouched.
    """
    from transformers.activations import ACT2FN, NewGELUActivation

    for module in model.modules():
        if isinstance(getattr(module, "act", None), NewGELUActivation):
            module.act = ACT2FN["gelu_pytorch_tanh"]
    return model


def load_adapters(base_model, adapters: dict[str, str | Path], *, trainable: bool = False):
    """Attach several LoRA adapters (name -> folder) to one base model copy; returns the PeftModel."""
    from peft import PeftModel

    model = None
    for name, path in adapters.items():
        if model is None:
            model = PeftModel.from_pretrained(base_model, str(path), adapter_name=name, is_trainable=trainable,
                                              use_safetensors=True)
        else:
            model.load_adapter(str(path), adapter_name=name, is_trainable=trainable, use_safetensors=True)
    if model is None:
        raise ValueError("no adapters given")
    return model if trainable else model.eval()


# ---------------------------------------------------------------------------------------------------- serving


@dataclasses.dataclass(frozen=True)
class Precision:
    """How a served model computes: the activations' dtype, and whether its linear layers hold int8 weights."""

    dtype: torch.dtype
    int8_weights: bool = False

    def __str__(self) -> str:
        return ("int8 weights, " if self.int8_weights else "") + str(self.dtype).replace("torch.", "")

    @property
    def key(self) -> str:
        """Short name: fp32, bf16, fp16, int8+bf16, int8+fp32 (how results/benchmarks/precision.json names it)."""
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        return f"int8+{name}" if self.int8_weights else name


def serving_precision(name: str | None, device: torch.device | str | None = None) -> Precision:
    """The precision the app serves with. `auto` = the fastest whose ROUGE stays with fp32's: int8 weights with bf16
    compute on CPUs with native bf16, bf16/fp16 on GPUs, fp32 elsewhere. `int8` asks for int8 weights wherever the CPU
    kernel exists (compute in bf16 where native, else fp32); fp32/bf16/fp16 as named. Only fp32 gives fp32's outputs:
    how many outputs each other precision changes is in results/benchmarks/precision.json."""
    device = torch.device(device) if device is not None else default_device()
    if name in (None, "auto", "int8"):
        wanted = name == "int8" or cpu_has_bf16()
        dtype = best_dtype(device)
        return Precision(dtype, wanted and device.type == "cpu" and int8_kernel_available(dtype))
    return Precision(resolve_dtype(name, device))


def prepare_for_inference(model, precision: Precision):
    """Make a loaded model (adapters already attached) fast to generate with; the app does this to every slot.

    - Eager attention: T5's SDPA path builds a float mask of (batch, heads, length, length) per layer from the position
      bias and runs a flash kernel that is slow for one-token decoding steps on CPU; plain matmuls are faster here.
    - int8 weights for every linear layer but the LoRA matrices, if `precision.int8_weights`.
    - In bf16/fp16, the head's leading logits recomputed in fp32 from its unquantised weights (`ExactTopLogits`):
      this removes the head's own rounding, not the layers' below it, so outputs still differ from fp32 sometimes.
    LoRA matrices stay fp32 (peft's default): at decoding sizes fp32 matmuls are the faster ones on CPU.
    """
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    core.set_attn_implementation("eager")
    if precision.dtype != torch.float32 and not isinstance(core.lm_head, ExactTopLogits):
        core.lm_head = ExactTopLogits(core.lm_head)
    if precision.int8_weights:
        quantize_int8(model)  # the head too; ExactTopLogits keeps its unquantised weights for the fp32 logits
    return model.eval()


class ExactTopLogits(nn.Module):
    """An lm_head computed in reduced precision whose k best logits per position are recomputed in fp32.

    What it guarantees: the k leading logits are the fp32 product of the head's unquantised weights and *the hidden
    state the head receives*. It does not make the output match fp32: that hidden state was computed in bf16 (and
    with int8 weights, if so served), so it already differs from fp32's, and where two tokens are close the greedy or
    beam choice can still flip. What it removes is the head's own rounding: bf16 rounds a logit of ~20 to steps of
    0.125, enough to swap the two best tokens of a near tie (on the demo family, without it 50 of 240 full-model
    summaries changed and ROUGE-1 fell by 0.010; with it ~20 of 240 and no ROUGE change). With it, on the whole demo
    test split, 31 of 240 LoRA summaries still differ from fp32 in bf16 and 48 with int8 weights + bf16 (all four
    models: 887 and 850 of 960 identical, ROUGE-1 within 0.004; results/benchmarks/precision.json, from
    `python -m benchmarks.precision`). Costs nothing measurable; it also lets the head itself be int8. k = 32 covers
    beam search's 2 × beams candidates for up to 16 beams. Meant for generation (one position per step), not training.
    """

    def __init__(self, head: nn.Linear, k: int = 32):
        super().__init__()
        self.head, self.k = head, k
        self.exact = nn.Parameter(head.weight.detach(), requires_grad=False)  # shares the head's storage

    @property
    def weight(self) -> torch.Tensor:
        return self.exact

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden).float()
        top = logits.topk(min(self.k, logits.shape[-1]), dim=-1).indices
        with torch.autocast(hidden.device.type, enabled=False):
            exact = torch.einsum("...kd,...d->...k", self.exact[top].float(), hidden.float())
        return logits.scatter_(-1, top, exact)


class Int8Linear(nn.Module):
    """A frozen linear layer stored as int8 weights with one scale per output row (weight-only quantisation).

    A decoding step multiplies a few rows by every weight matrix, so its speed is set by the weight bytes read: int8
    halves bf16's. Inputs of at most `self.small` rows (decoding) use PyTorch's int8-weight kernel; larger ones
    (encoding a prompt) dequantise to the activations' dtype and use the ordinary matmul, which is faster there.
    Where the two cross was measured on this 2-core CPU (bf16): ~40 rows for FLAN-T5-base's block matrices, ~200 for
    its 32128-row lm_head, whose dequantisation alone takes 31 ms; hence 32 and 128. Activations
    keep their dtype; only the weights are rounded (symmetric, 127 levels per row). The int8 tensor is named `weight`
    so that code checking `weight.dtype` (T5's feed-forward does) sees int8 and leaves the activations alone.
    """

    def __init__(self, linear: nn.Linear, dtype: torch.dtype):
        super().__init__()
        w = linear.weight.detach().float()
        scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.register_buffer("weight", torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(dtype))
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.small = 128 if self.weight.numel() > 8_000_000 else 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(self.scales.dtype)
        if rows.shape[0] <= self.small:
            y = torch.ops.aten._weight_int8pack_mm(rows.contiguous(), self.weight, self.scales)
        else:
            y = nn.functional.linear(rows, self.weight.to(self.scales.dtype) * self.scales[:, None])
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def quantize_int8(model) -> int:
    """Replace every plain nn.Linear but the LoRA matrices with an Int8Linear; returns how many.

    The remaining tensors (embeddings, lm_head, norms) are then copied out of the memory-mapped checkpoint, so that
    the mapping and its now unused pages can go, and freed heap is handed back to the OS (glibc keeps it otherwise):
    without both, the int8 set was resident at 2.3 GB instead of 1.3 GB.
    """
    dtype = next(model.parameters()).dtype
    names = [name for name, module in model.named_modules()
             if type(module) is nn.Linear and "lora_" not in name]
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, Int8Linear(getattr(owner, child), dtype))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.data = parameter.data.clone()
    _release_free_memory()
    return len(names)


def _release_free_memory() -> None:
    """Return freed heap pages to the OS where the C library allows it (glibc's malloc_trim); a no-op elsewhere."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@functools.cache
def int8_kernel_available(dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether this PyTorch build has the CPU int8-weight matmul (`aten::_weight_int8pack_mm`) for `dtype` inputs."""
    try:
        out = torch.ops.aten._weight_int8pack_mm(torch.ones(2, 64, dtype=dtype), torch.ones(8, 64, dtype=torch.int8),
                                                 torch.ones(8, dtype=dtype))
        return bool(out.shape == (2, 8) and float(out[0, 0]) == 64.0)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_share": trainable / total if total else 0.0}
