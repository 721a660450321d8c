"""Dropout that is cheap on a CPU, for training there.

torch draws a CPU dropout mask one random number per element (`bernoulli_`; MKL's vectorised generator is used
for float32 on Intel CPUs only), and a T5 in training drops out its attention weights, batch x heads x length x
length of them per layer: on the 2-core AMD machines here a quarter of a full fine-tuning step of the demo family was
spent drawing masks. `cpu_dropout(model)` swaps, for the duration of a block, every `nn.Dropout` for one whose mask is
read off 16 random bits per element (four elements per 64-bit draw) and the attention for T5's own eager attention
with that dropout, then puts the originals back. The keep probability is 1 - p rounded to 1/65,536 and the kept
values are scaled by its inverse, so the expected activation is unchanged; masks come from torch's global generator,
so a seeded run is repeatable and a resumed Trainer run restores them. Only the masks differ from torch's: in
evaluation mode (no dropout) the outputs equal the stock model's (tests/test_dropout.py). Measured side by side on
this machine (`python -m benchmarks.dropout`), a demo full fine-tuning step took 528 ms with torch's masks and 415 ms
with these (1.27x; LoRA 1.31x), 1.10x in fp32 with the kernels capped to AVX2.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

LEVELS = 1 << 16  # a mask element is 16 random bits: p is kept to 1/65,536


def _threshold(p: float) -> int:
    return round(p * LEVELS)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A boolean mask, True where an element is kept (probability 1 - p, rounded to 1/65,536)."""
    n = math.prod(shape)
    words = torch.randint(-(2 ** 63), 2 ** 63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return words.view(torch.int16)[:n].view(shape) >= -(LEVELS // 2) + _threshold(p)


class _MaskedScale(torch.autograd.Function):
    """x * mask / keep, with the mask kept (one byte an element) for the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        mask = keep_mask(x.shape, p, x.device)
        ctx.scale = LEVELS / (LEVELS - _threshold(p))
        ctx.save_for_backward(mask)
        return torch.where(mask, x, 0) * ctx.scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return torch.where(mask, grad, 0) * ctx.scale, None


def cheap_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """nn.functional.dropout with the cheap mask."""
    if not training or p == 0:
        return x
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return _MaskedScale.apply(x, p)


class CheapDropout(nn.Dropout):
    """nn.Dropout with the cheap mask (same `p`, same train/eval switch, no state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cheap_dropout(x, self.p, self.training)


def t5_attention(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0, position_bias=None,
                 **kwargs):
    """transformers' T5 eager attention (scores + position bias + mask, softmax, dropout, weighted values) with the
    softmax in float32 and the cheap mask on the attention weights."""
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.size(-1) ** -0.5 if scaling is None else scaling)
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores.float(), dim=-1).type_as(query)
    weights = cheap_dropout(weights, dropout, module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


ATTENTION = "workbench_cheap_dropout"


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION, t5_attention)
    AttentionMaskInterface.register(ATTENTION, eager_mask)  # additive float masks, as the eager attention takes


def _top_pretrained(model):
    from transformers import PreTrainedModel

    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)


@contextlib.contextmanager
def cpu_dropout(model, enabled: bool | None = None):
    """Within the block, `model` (a transformers model or a peft model around one) trains with the cheap masks:
    every nn.Dropout swapped for CheapDropout, and a T5's attention for `t5_attention`. `enabled` None = only when
    the model is on a CPU (CUDA's fused dropout is fast, and its attention kernels faster than the eager one)."""
    core = _top_pretrained(model)
    if enabled is None:
        enabled = next(model.parameters()).device.type == "cpu"
    if not enabled:
        yield model
        return
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, CheapDropout(child.p, child.inplace).train(child.training))
                swapped.append((parent, name, child))
    attention = None
    if core is not None and getattr(core.config, "model_type", None) in ("t5", "mt5", "umt5"):
        _register()
        attention = core.config._attn_implementation
        core.set_attn_implementation(ATTENTION)
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
        if attention is not None:
            core.set_attn_implementation(attention)
