"""Models and tokenizers: the demo family's FLAN-T5-shaped architecture, its tokenizer, and safe loading.

One loader serves the app, the trainers and the evaluator. Weights are read as safetensors only and
`trust_remote_code` is never set.
"""

from __future__ import annotations

import functools
import json
import logging
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


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000, extra_texts: Iterable[str] = ()):
    """Train a T5 tokenizer (Unigram, the pipeline T5Tokenizer rebuilds on load) with T5's special ids.

    `<pad>`=0, `</s>`=1, `<unk>`=2, the learned pieces, then `<extra_id_99>` ... `<extra_id_0>` (last id), like T5.
    The pre-tokenizer is exactly T5Tokenizer's (WhitespaceSplit + Metaspace, no normalizer) so that ids survive a
    save/load round trip.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

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
    backend.train_from_iterator([*texts, *extra_texts], trainer=trainer)
    vocab = json.loads(backend.to_str())["model"]["vocab"]
    pieces = [(piece, score) for piece, score in vocab]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in range(SENTINELS - 1, -1, -1)]
    return T5Tokenizer(vocab=pieces, extra_ids=SENTINELS, model_max_length=512)


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
    return model.to(device).eval()


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


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_share": trainable / total if total else 0.0}
