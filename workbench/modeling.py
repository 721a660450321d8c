"""Models and tokenizers: the demo family's FLAN-T5-shaped architecture, its tokenizer, and safe loading.

One loader serves the app, the trainers and the evaluator. Weights are read as safetensors only and
`trust_remote_code` is never set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import warnings
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


CPU_KINDS = ("avx512_bf16", "avx2", "basic")  # what decides CPU serving: native bf16, AVX2 only, neither
CPU_KIND_ENV = "WORKBENCH_CPU_KIND"  # forces the kind (tests, or a CPU this detection gets wrong)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which its bf16 matmuls are no longer native
_ONEDNN_BELOW_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@functools.cache
def cpu_flags() -> dict[str, bool]:
    """Which of the instruction sets that decide CPU serving speed this CPU reports (/proc/cpuinfo)."""
    try:
        words = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        words = set()
    return {flag: flag in words for flag in CPU_FLAGS}


def cpu_kind() -> str:
    """The CPU as serving sees it: `avx512_bf16` (native bf16: AVX512-BF16 or AMX), `avx2` (AVX2, no native bf16) or
    `basic` (neither). What the kernels may use counts, not only what the chip has: ATEN_CPU_CAPABILITY=avx2 and
    ONEDNN_MAX_CPU_ISA=AVX2 make an AVX512-BF16 machine compute as an AVX2 one (how the benchmarks emulate it), so
    the answer follows them. WORKBENCH_CPU_KIND forces it."""
    forced = os.environ.get(CPU_KIND_ENV, "").strip().lower()
    if forced:
        if forced not in CPU_KINDS:
            raise ValueError(f"{CPU_KIND_ENV}={forced!r}: expected one of {', '.join(CPU_KINDS)}")
        return forced
    flags, capability = cpu_flags(), torch.backends.cpu.get_cpu_capability()
    onednn = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    if (flags["avx512_bf16"] or flags["amx_bf16"]) and capability.startswith("AVX512") \
            and onednn not in _ONEDNN_BELOW_BF16:
        return "avx512_bf16"
    return "avx2" if flags["avx2"] and capability in ("AVX2", "AVX512") else "basic"


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 matmuls are faster than fp32."""
    return cpu_kind() == "avx512_bf16"


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
                    min_word_count: int = 2, word_share: float = 0.5):
    """Train a T5 tokenizer (Unigram, the pipeline T5Tokenizer rebuilds on load) with T5's special ids.

    `<pad>`=0, `</s>`=1, `<unk>`=2, the learned pieces, then `<extra_id_99>` ... `<extra_id_0>` (last id), like T5.
    The pre-tokenizer is exactly T5Tokenizer's (WhitespaceSplit + Metaspace, no normalizer) so that ids survive a
    save/load round trip.

    On a small corpus the Unigram trainer stops at a few hundred subword pieces and spells common words in two or
    three of them ("▁cl ient", "▁#Person 1 #"). SentencePiece on a large corpus keeps frequent words whole, so every
    word seen at least `min_word_count` times is added as a piece scored by its unigram log-frequency: FLAN-T5-like
    ~1.3 tokens per word instead of ~2.2, and speaker tags such as `#Person1#` become single pieces. On a large,
    varied corpus the trainer would fill the whole vocabulary with subword pieces and leave no room for whole words
    (then even "I" and "#Person1#" were split), so it gets `1 - word_share` of the vocabulary and the frequent words
    the rest.
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
        vocab_size=max(300, round((vocab_size - SENTINELS) * (1 - word_share))),
        special_tokens=SPECIAL_TOKENS,
        unk_token="<unk>",
        initial_alphabet=alphabet,
        max_piece_length=16,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    pieces = dict(canonical_pieces(json.loads(backend.to_str())["model"]["vocab"]))  # specials, then learned pieces
    words = Counter(word.strip(".,!?;:\"") for text in texts for word in text.split())
    total = sum(words.values())
    frequent = sorted(((f"▁{w}", math.log(c / total)) for w, c in words.items()
                       if w and c >= min_word_count and f"▁{w}" not in pieces), key=lambda item: -item[1])
    room = vocab_size - SENTINELS - len(pieces)
    pieces.update(frequent[: max(room, 0)])
    vocab = list(pieces.items()) + [(f"<extra_id_{i}>", 0.0) for i in range(SENTINELS - 1, -1, -1)]
    return T5Tokenizer(vocab=vocab, extra_ids=SENTINELS, model_max_length=512)


# The Unigram trainer gives each character it must keep but did not choose (the initial alphabet's) the lowest score
# of its pieces plus 0, 1e-4, 2e-4, ... in the order of a hash set.
_APPENDED_STEP = 1e-4


def canonical_pieces(vocab: list) -> list[tuple[str, float]]:
    """The trainer's [piece, score] list in an order, and with scores, that depend on the corpus alone.

    `tokenizers`' Unigram trainer gives the same pieces for the same corpus, but not in the same order: its hash maps
    are seeded per process, so pieces of equal score change places, and so do the kept characters, whose scores
    follow their order; with them change the token ids, the embedding rows a seeded model gives them, and everything
    trained from there (`make demo` built another family each run). Here the special tokens keep their places,
    scores are rounded to 1e-9 (below that they differ by the order of a float sum), the single characters on the
    kept characters' grid take its scores in the order of their text, and the pieces are sorted by score, then text."""
    specials = [(p, s) for p, s in vocab if p in SPECIAL_TOKENS]
    learned = [(p, round(s, 9)) for p, s in vocab if p not in SPECIAL_TOKENS]
    if not learned:
        return specials
    lowest = min(s for _, s in learned)

    def on_grid(piece: str, score: float) -> bool:
        steps = (score - lowest) / _APPENDED_STEP
        return len(piece) == 1 and steps < len(learned) and abs(steps - round(steps)) < 1e-4

    kept = [(p, s) for p, s in learned if on_grid(p, s)]
    chars = list(zip(sorted(p for p, _ in kept), sorted((s for _, s in kept), reverse=True)))
    pieces = [(p, s) for p, s in learned if not on_grid(p, s)] + chars
    return specials + sorted(pieces, key=lambda item: (-item[1], item[0]))


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


def add_copy_prior(model, strength: float = 10.0, context: int = 1) -> list[int]:
    """Bias encoder self-attention heads towards the tokens on their left; returns the encoder buckets it set.

    T5 has no absolute positions, and its cross-attention none at all, so a decoder can only copy its input through
    an induction circuit: the encoder writes each token's left neighbour into it, the decoder looks up the position
    whose neighbour is the token it just wrote. Built from scratch at demo scale, that circuit did not form: pure copy
    of 4-12 random tokens stayed at 19% token accuracy after 1,900 steps, where the same model with this prior reached
    79% after 400 (and an nn.Transformer with absolute positions 73% after 300).

    One neighbour is ambiguous in real text, where the token just written occurs several times: a full model
    fine-tuned from a context-1 copy base continued a real dialogue's restatement right 78% of the time after a token
    that occurs once in the dialogue, 39% after one that occurs 2-3 times, 17% after one that occurs 4+ times.
    `context=k` points encoder head h (h < k) at the token h+1 to the left, and decoder self-attention head h
    (h < k-1) at its own output h+1 steps back, so that the lookup can match the last k tokens written against the k
    tokens left of each position. The priors are initial values of trained
    parameters: the architecture stays FLAN-T5's.
    """
    from transformers.models.t5.modeling_t5 import T5Attention

    def bucket(attention, offset: int, bidirectional: bool) -> int:
        return int(T5Attention._relative_position_bucket(
            torch.tensor([offset]), bidirectional=bidirectional, num_buckets=attention.relative_attention_num_buckets,
            max_distance=attention.relative_attention_max_distance))

    encoder = model.encoder.block[0].layer[0].SelfAttention
    decoder = model.decoder.block[0].layer[0].SelfAttention
    if not 1 <= context <= encoder.n_heads:
        raise ValueError(f"copy prior context {context}: must be 1..{encoder.n_heads} (one encoder head per token)")
    buckets = [bucket(encoder, -(h + 1), True) for h in range(context)]
    with torch.no_grad():
        for head, b in enumerate(buckets):
            encoder.relative_attention_bias.weight[b, head] = strength
        for head in range(context - 1):
            decoder.relative_attention_bias.weight[bucket(decoder, -(head + 1), False), head] = strength
    return buckets


def load_model(path: str | Path, *, dtype: str | torch.dtype | None = "fp32", device: str | None = None):
    """A seq2seq model from a local folder (a store revision): safetensors only, no remote code, eval mode."""
    from transformers import AutoModelForSeq2SeqLM

    quiet_transformers()
    device = torch.device(device) if device else default_device()
    model = AutoModelForSeq2SeqLM.from_pretrained(
        str(path), dtype=resolve_dtype(dtype, device), use_safetensors=True, trust_remote_code=False
    )
    if getattr(model.config, "copy_bias", None) and getattr(model.config, "copy_inner", None) is None:
        from workbench.generation import inner_pieces

        # saved before its copy bias left the pieces inside a word alone: its tokenizer says which they are
        model.config.copy_inner = inner_pieces(load_tokenizer(path))
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


ADAPTER_GENERATION_CONFIG = "generation_config.json"  # an adapter's own decoding defaults (its minimum length)


def attach_adapter(model, folder: str | Path, name: str, *, trainable: bool = False):
    """Attach the LoRA adapter in `folder` as `name` (to a base model, or to a PeftModel that has others already);
    returns the PeftModel. The adapter's own minimum length, if its folder carries one
    (`save_adapter_min_new_tokens`), comes with it (`generation.adapter_min_new_tokens`)."""
    from peft import PeftModel

    from workbench.generation import set_adapter_min_new_tokens

    with untied_head_adapters(model):
        if isinstance(model, PeftModel):
            model.load_adapter(str(folder), adapter_name=name, is_trainable=trainable, use_safetensors=True)
        else:
            model = PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=trainable,
                                              use_safetensors=True)
    set_adapter_min_new_tokens(model, name, read_adapter_min_new_tokens(folder))
    return model


@contextlib.contextmanager
def untied_head_adapters(model):
    """Adapters on `lm_head` without peft's warning that they may break weight tying, where there is no tying to
    break: peft reads `config.tie_word_embeddings`, which transformers 5 saves as true for the demo family's T5
    configs although their head is a tensor of its own (as FLAN-T5's is). A head that does share the embedding's
    tensor, or whose tensor cannot be told (a head wrapped in another module), keeps the warning."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = core.get_output_embeddings()
    head_weight = getattr(getattr(head, "base_layer", head), "weight", None)  # an adapted head: its base's
    embedding_weight = getattr(core.get_input_embeddings(), "weight", None)
    with warnings.catch_warnings():
        if head_weight is not None and embedding_weight is not None and head_weight is not embedding_weight:
            warnings.filterwarnings("ignore", message="Model has `tie_word_embeddings=True`", category=UserWarning)
        yield


def read_adapter_min_new_tokens(folder: str | Path) -> int | None:
    """The minimum length an adapter folder's generation_config.json names (None without one); a folder from
    anywhere (the Hub) is read as untrusted: anything but a whole number in [0, 1024] is refused."""
    path = Path(folder) / ADAPTER_GENERATION_CONFIG
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("min_new_tokens")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1024):
        raise ValueError(f"{path.name}: min_new_tokens must be a whole number in [0, 1024], got {str(value)[:40]!r}")
    return value


def save_adapter_min_new_tokens(model, name: str, folder: str | Path) -> None:
    """Write adapter `name`'s own minimum length (if it has one) as `folder`/generation_config.json, the file a Hub
    model keeps its decoding defaults in; `attach_adapter` reads it back."""
    from transformers import GenerationConfig

    from workbench.generation import adapter_min_new_tokens

    value = adapter_min_new_tokens(model, name)
    if value is not None:
        GenerationConfig(min_new_tokens=value).save_pretrained(str(folder))  # 0: none, whatever the base carries


def load_adapters(base_model, adapters: dict[str, str | Path], *, trainable: bool = False):
    """Attach several LoRA adapters (name -> folder) to one base model copy; returns the PeftModel."""
    if not adapters:
        raise ValueError("no adapters given")
    model = base_model
    for name, path in adapters.items():
        model = attach_adapter(model, path, name, trainable=trainable)
    return model if trainable else model.eval()


# ---------------------------------------------------------------------------------------------------- serving


@dataclasses.dataclass(frozen=True)
class Precision:
    """How a served model computes: the activations' dtype, whether its linear layers hold int8 weights (weight-only,
    `Int8Linear`) or are torch.ao dynamic-int8 layers (int8 weights and per-call int8 activations, fp32 out), and
    why this precision was chosen (one line for the app's header; not part of equality)."""

    dtype: torch.dtype
    int8_weights: bool = False
    dynamic_int8: bool = False
    reason: str = dataclasses.field(default="", compare=False)

    def __str__(self) -> str:
        if self.dynamic_int8:
            return "int8 dynamic (torch.ao), float32"
        return ("int8 weights, " if self.int8_weights else "") + str(self.dtype).replace("torch.", "")

    @property
    def key(self) -> str:
        """Short name: fp32, bf16, fp16, int8+bf16, int8+fp32, int8-dynamic (how results/benchmarks/precision.json
        names it)."""
        if self.dynamic_int8:
            return "int8-dynamic"
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        return f"int8+{name}" if self.int8_weights else name

    @property
    def batch_invariant(self) -> bool:
        """Whether a prompt's output is the same whatever else shares its batch. Not with dynamic int8: one
        activation scale per call is taken over the whole batch, so other requests' rows move this one's rounding."""
        return not self.dynamic_int8


# What `auto` serves on an AVX2-only CPU, and why. The bar: >= 90% of the demo test outputs identical to fp32 and
# ROUGE-1 within 0.005 per model. torch.ao dynamic int8 (per-channel weights, fp32 top logits) is the fast candidate
# there, but measured on an emulated AVX2 CPU (results/benchmarks/precision-avx2.json) it kept 1,257 of 1,560 outputs
# (81%) and moved the base's ROUGE-1 by -0.0124: its activations are rounded to 7 bits, one scale per call.
# Weight-only int8 with fp32 compute came closer (88% identical) but PyTorch's kernel for it is ~14x slower than
# the fp32 matmul there (17 ms against 1.2 ms for 8 x 768 x 3072).
AVX2_AUTO = "fp32"
# On AVX512-BF16 CPUs, measured on the demo family (results/benchmarks/precision.json, 390 test dialogues x 4 slots):
# bf16 kept 95.6% of outputs identical to fp32, int8 weights + bf16 94.8%, at the same speed (22 s and 24 s; the
# committed family of the seventh rebuild of 2026-12-06, on an Intel Xeon with AMX; the fourth's on an AMD EPYC:
# 96.2% and 93.1%; the third's 98.3% and 96.3%); on the family before the copy base, 90.5% and 83.8%.
BF16_WHY = "int8 weights are no faster here and change more outputs (95% of demo outputs identical to fp32 vs 96%)"
AVX2_WHY = "int8-dynamic is faster but kept only 81% of demo outputs identical (needs 90%)"


def serving_precision(name: str | None, device: torch.device | str | None = None) -> Precision:
    """The precision the app serves with. `auto` = per device and CPU kind, the fastest that holds quality
    (`auto_precision`). `int8` asks for int8 weights wherever the CPU kernel exists (compute in bf16 where native,
    else fp32); `int8-dynamic` for torch.ao dynamic int8 (CPU); fp32/bf16/fp16 as named. Only fp32 gives fp32's
    outputs: how many outputs each other precision changes is in results/benchmarks/precision.json."""
    device = torch.device(device) if device is not None else default_device()
    if name in (None, "auto"):
        return auto_precision(device)
    if name == "int8":
        dtype = best_dtype(device)
        int8 = device.type == "cpu" and int8_kernel_available(dtype)
        return Precision(dtype, int8, reason="dtype: int8 in the config")
    if name == "int8-dynamic":
        if device.type != "cpu" or not dynamic_int8_available():
            raise ValueError("int8-dynamic needs a CPU with a torch.ao quantized engine (x86/fbgemm)")
        return Precision(torch.float32, dynamic_int8=True, reason="dtype: int8-dynamic in the config")
    return Precision(resolve_dtype(name, device), reason=f"dtype: {name} in the config")


def auto_precision(device: torch.device) -> Precision:
    """`auto`, per device and CPU kind: GPUs bf16/fp16; AVX512-BF16/AMX CPUs native bf16 (`BF16_WHY`); AVX2-only CPUs
    `AVX2_AUTO` (the measured winner that holds quality); other CPUs fp32. The reason says which."""
    if device.type != "cpu":
        return Precision(best_dtype(device), reason=f"auto on {device.type}: its native reduced precision")
    kind = cpu_kind()
    if kind == "avx512_bf16":
        return Precision(torch.bfloat16, reason=f"auto on an avx512_bf16 CPU: native bf16; {BF16_WHY}")
    if kind == "avx2" and AVX2_AUTO == "int8-dynamic" and dynamic_int8_available():
        return Precision(torch.float32, dynamic_int8=True, reason=f"auto on an avx2 CPU (no native bf16): {AVX2_WHY}")
    why = f"auto on an {kind} CPU (no native bf16): fp32" + (f"; {AVX2_WHY}" if kind == "avx2" else "")
    return Precision(torch.float32, reason=why)


@functools.cache
def dynamic_int8_available() -> bool:
    """Whether this PyTorch build has a CPU quantized engine for torch.ao dynamic int8 linear layers."""
    return any(engine in torch.backends.quantized.supported_engines for engine in ("x86", "fbgemm", "onednn"))


def prepare_for_inference(model, precision: Precision):
    """Make a loaded model (adapters already attached) fast to generate with; the app does this to every slot.

    - Eager attention: T5's SDPA path builds a float mask of (batch, heads, length, length) per layer from the position
      bias and runs a flash kernel that is slow for one-token decoding steps on CPU; plain matmuls are faster here.
    - int8 weights for every linear layer but the LoRA matrices, if `precision.int8_weights` (weight-only) or
      `precision.dynamic_int8` (torch.ao, fp32 compute).
    - Wherever the head is not plain fp32, its leading logits recomputed in fp32 from its unquantised weights
      (`ExactTopLogits`): this removes the head's own rounding, not the layers' below it, so outputs still differ
      from fp32 sometimes.
    - In fp32 on CPU, decoding steps through every linear layer on oneDNN's matmul (`DecodingLinear`): at
      FLAN-T5-base's shapes 2-5x faster per layer than MKL's at 2-4 rows and faster from 8 rows up too, and a row's
      rounding no longer depends on its batch.
    - LoRA matrices stay fp32 (peft's default; at decoding sizes fp32 matmuls are the faster ones on CPU) and compute
      row by row (`RowwiseLinear`), so that a request's answer does not depend on what else shares its batch.
    """
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    core.set_attn_implementation("eager")
    reduced = precision.dtype != torch.float32 or precision.int8_weights or precision.dynamic_int8
    if reduced and not isinstance(core.lm_head, ExactTopLogits):
        core.lm_head = ExactTopLogits(core.lm_head)
    if precision.int8_weights:
        quantize_int8(model)  # the head too; ExactTopLogits keeps its unquantised weights for the fp32 logits
    elif precision.dynamic_int8:
        quantize_dynamic_int8(model)
    elif precision.dtype == torch.float32 and core.device.type == "cpu":
        fp32_decoding(model)
    rowwise_lora(model)
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
    An adapter that trained the head (a LoRA with `lm_head` among its target modules) adds its own update to those
    logits, computed in fp32 per row as `adapter_names` route the rows: its base head runs once more per step for it.
    """

    def __init__(self, head: nn.Module, k: int = 32):
        super().__init__()
        base = getattr(head, "base_layer", None)  # a peft LoRA layer: an adapter trained the head too
        if base is not None and not isinstance(base, FloatLogits):
            head.base_layer = base = FloatLogits(base)
        self.head, self.k, self.adapted = head, k, base is not None
        weight = (base if base is not None else head).weight
        self.exact = nn.Parameter(weight.detach(), requires_grad=False)  # shares the head's storage

    @property
    def weight(self) -> torch.Tensor:
        return self.exact

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden).float()  # with an adapter on the head, per row as adapter_names route it
        top = logits.topk(min(self.k, logits.shape[-1]), dim=-1).indices
        # the adapter's own update, in fp32 (peft added it to the base's fp32 logits); 0 for "__base__" rows
        update = (logits - self.head.base_layer(hidden)).gather(-1, top) if self.adapted else 0
        with torch.autocast(hidden.device.type, enabled=False):
            # multiply and sum rather than a batched matrix product, whose rounding can depend on the batch size
            exact = (self.exact[top].float() * hidden.float().unsqueeze(-2)).sum(-1)
        return logits.scatter_(-1, top, exact + update)


class FloatLogits(nn.Module):
    """The frozen base of a LoRA-adapted head, giving fp32 logits: peft adds the adapter's update to the base's output
    and casts the sum to that output's dtype, which in bf16 would round the update away again."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    @property
    def weight(self) -> torch.Tensor:
        return self.layer.weight

    def forward(self, hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.layer(hidden).float()


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
        if self.uses_kernel(x):
            y = torch.ops.aten._weight_int8pack_mm(rows.contiguous(), self.weight, self.scales)
        else:
            y = nn.functional.linear(rows, self.weight.to(self.scales.dtype) * self.scales[:, None])
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def uses_kernel(self, x: torch.Tensor) -> bool:
        """Whether `x` goes through the int8 kernel. A decoding step (one position per sequence) always does, however
        many sequences the batch holds, and a prompt never does: the two paths round differently, so choosing by the
        row count would let a request's answer depend on how many other requests share its batch
        (`ModelSet`'s micro-batcher). Inputs without a sequence axis fall back to the row count."""
        if x.dim() >= 3:
            return x.shape[-2] == 1
        return x.reshape(-1, self.in_features).shape[0] <= self.small


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
    release_free_memory()
    return len(names)


def quantize_dynamic_int8(model) -> int:
    """torch.ao dynamic int8 for every plain nn.Linear but the LoRA matrices; returns how many. Weights int8 with one
    scale per output row (per-channel: per-tensor scales changed far more outputs), activations quantised per call,
    fp32 out. The fbgemm/oneDNN kernels are the fast path on CPUs without native bf16 (AVX2)."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
            if type(module) is nn.Linear and "lora_" not in name}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        quantize_dynamic(model, spec, inplace=True)
    release_free_memory()
    return len(spec)


class RowwiseLinear(nn.Linear):
    """A LoRA matrix computed in fixed blocks of `BLOCK` rows, so that each row's rounding is the same however many
    rows come with it.

    A BLAS matrix product may round a row differently depending on how many rows it is given (one row takes a
    matrix-vector kernel, seven a blocked one, a padded batch of prompts yet another). peft runs each adapter's rows
    of a mixed batch as one product, so a request's LoRA rows rounded differently alone than batched with other
    requests, and in bf16 serving that flipped 14 of 1,680 demo summaries. Here the rows are cut into blocks of 16
    (the last one zero-padded) and multiplied block by block (`bmm`): every block has the same shape, whatever the
    batch. The rank is small, so the padding costs little."""

    BLOCK = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        n = rows.shape[0]
        if n % self.BLOCK:
            rows = torch.cat([rows, rows.new_zeros(self.BLOCK - n % self.BLOCK, self.in_features)])
        blocks = rows.view(-1, self.BLOCK, self.in_features)
        y = torch.bmm(blocks, self.weight.t().expand(blocks.shape[0], -1, -1)).reshape(-1, self.out_features)[:n]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class DecodingLinear(nn.Linear):
    """An fp32 linear layer served on a CPU: its decoding steps (one position per sequence) are fast at a few rows and
    round each row the same however many rows come with it. Prompts (many positions) take the ordinary product.

    Why, measured with PyTorch 2.13 on a 2-core AVX512 CPU in fp32 at FLAN-T5-base's shapes, and again with every
    kernel library capped to AVX2 (what `auto` serves fp32 on):
    - MKL's `x @ W.T`, which nn.Linear runs, costs 2-3x more at 2-4 rows than at one (the 32128-row lm_head: 7.4 ms
      at 1 row, 24 ms at 3), and rounds a row one way alone, another among 2-3 rows and a third among 4 or more: a
      Compare answered alone and the same one micro-batched with other users' requests could differ in the last
      bit, and greedy decoding turns a last-bit difference at a near tie into another summary.
    - oneDNN's fp32 matmul (`torch.ops.mkldnn._linear_pointwise`, the op PyTorch's own CPU compiler emits) rounds a
      row the same among any 2-64 rows and is the fastest at every row count from 8 up (the lm_head: 5.4 ms at 3
      rows, 18 ms at 60 against 30 ms), so a lone row is decoded beside a zero row.
    - Where that op is missing, `W @ x.T` in zero-padded blocks of four rows (`bmm`, one shape whatever the batch):
      as fast at 2-4 rows (4.0 ms for the lm_head), up to 3x slower than the others from 16 rows on.
    """

    BLOCK = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[-2] != 1:
            return super().forward(x)
        rows = x.reshape(-1, self.in_features)
        n = rows.shape[0]
        if onednn_linear_available():
            if n == 1:
                rows = torch.cat([rows, rows.new_zeros(1, self.in_features)])
            y = torch.ops.mkldnn._linear_pointwise(rows, self.weight, self.bias, "none", [], "")[:n]
        else:
            y = _blocked_product(rows, self.weight, self.BLOCK)[:n]
            if self.bias is not None:
                y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def _blocked_product(rows: torch.Tensor, weight: torch.Tensor, block: int) -> torch.Tensor:
    """rows @ weight.T computed as weight @ block.T for zero-padded blocks of `block` rows, all of one shape."""
    if rows.shape[0] % block:
        rows = torch.cat([rows, rows.new_zeros(block - rows.shape[0] % block, rows.shape[1])])
    blocks = rows.view(-1, block, rows.shape[1]).transpose(1, 2)  # (blocks, in, block)
    return torch.bmm(weight.expand(blocks.shape[0], -1, -1), blocks).transpose(1, 2).reshape(-1, weight.shape[0])


@functools.cache
def onednn_linear_available() -> bool:
    """Whether this PyTorch build runs oneDNN's fp32 linear op, and it agrees with the ordinary product."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    try:
        weight, rows = torch.randn(8, 16), torch.randn(2, 16)
        out = torch.ops.mkldnn._linear_pointwise(rows, weight, None, "none", [], "")
    except (RuntimeError, TypeError):
        return False
    return bool(torch.allclose(out, rows @ weight.T, atol=1e-4))


def fp32_decoding(model) -> int:
    """Make every plain fp32 nn.Linear of a served model but the LoRA matrices (those are `RowwiseLinear`) a
    `DecodingLinear`, in place; returns how many."""
    count = 0
    for name, module in model.named_modules():
        if type(module) is nn.Linear and "lora_" not in name and module.weight.dtype == torch.float32:
            module.__class__ = DecodingLinear
            count += 1
    return count


def rowwise_lora(model) -> int:
    """Make every LoRA matrix of a served model a `RowwiseLinear` (same parameters, in place); returns how many."""
    count = 0
    for name, module in model.named_modules():
        if type(module) is nn.Linear and ("lora_A" in name or "lora_B" in name):
            module.__class__ = RowwiseLinear
            count += 1
    return count


def release_free_memory() -> None:
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
