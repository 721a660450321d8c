"""LoRA: the base stays frozen; low-rank adapters on the attention projections learn to summarize.

Defaults follow the reference recipe: r=32, alpha=32, target modules q and v, dropout 0.05.

    python -m trainers.lora                                   # demo base and data, offline -> local/...-lora
    python -m trainers.lora --config configs/recipes/lora.yaml  # the recipe of the served demo adapter
    python -m trainers.lora --model google/flan-t5-base --dataset knkarthick/dialogsum \\
        --output you/flan-t5-base-dialogsum-lora --push-to-hub you/flan-t5-base-dialogsum-lora
"""

from __future__ import annotations

import dataclasses
import sys

from trainers import common, options, sft
from trainers.options import ConfigError, arg


@dataclasses.dataclass
@options.defaults(learning_rate=1e-3)
class LoraRecipe(sft.SftRecipe):
    lora_r: int = arg(32, "LoRA rank", positive=True)
    lora_alpha: int = arg(32, "LoRA scaling numerator (scale = alpha / r)", positive=True)
    lora_dropout: float = arg(0.05, "dropout on the LoRA branch", within="[0, 1)")
    target_modules: list[str] = arg(["q", "v"], "modules that get adapters (space- or comma-separated). "
                                     "On the demo base and a user's own real pairs the feed-forward layers "
                                     "(wi_0,wi_1,wo) learn more than q,v at the same speed (docs/TRAINERS.md)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.target_modules = [m.strip() for entry in self.target_modules for m in entry.split(",") if m.strip()]
        if not self.target_modules:
            raise ConfigError("target_modules: name at least one module (e.g. q,v)")


def lora_settings(config: LoraRecipe):
    """peft's LoraConfig for the recipe."""
    from peft import LoraConfig, TaskType

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), bias="none", task_type=TaskType.SEQ_2_SEQ_LM)


def prepare(model, config: LoraRecipe):
    from peft import get_peft_model

    from workbench.modeling import untied_head_adapters

    with untied_head_adapters(model):
        peft_model = get_peft_model(model, lora_settings(config))
    peft_model.print_trainable_parameters()
    return peft_model


def describe(config: LoraRecipe) -> dict:
    return {"lora": {"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
                     "target_modules": list(config.target_modules)},
            **({"min_new_tokens": config.min_new_tokens} if config.min_new_tokens is not None else {})}


def main(argv: list[str] | None = None) -> dict:
    config = options.parse(LoraRecipe, argv, description=__doc__)
    return sft.run(config, "lora", prepare, describe)


if __name__ == "__main__":
    sys.exit(common.cli(main))
