"""LoRA: the base stays frozen; low-rank adapters on the attention projections learn to summarize.

Defaults follow the reference recipe: r=32, alpha=32, target modules q and v, dropout 0.05.

    python -m trainers.lora                                   # demo base and data, offline -> local/...-lora
    python -m trainers.lora --config configs/recipes/lora.yaml  # the recipe of the served demo adapter
    python -m trainers.lora --model google/flan-t5-base --dataset knkarthick/dialogsum \
        --output you/flan-t5-base-dialogsum-lora --push-to-hub you/flan-t5-base-dialogsum-lora
"""

from __future__ import annotations

import dataclasses
import sys

from trainers import common
from trainers import config as cfg
from trainers import sft
from trainers.config import ConfigError, field


@dataclasses.dataclass
class LoraConfig(sft.SFTConfig):
    learning_rate: float = field(1e-3, "peak learning rate (LoRA takes larger steps than full fine-tuning)")
    lora_r: int = field(32, "LoRA rank")
    lora_alpha: int = field(32, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = field(0.05, "dropout on the LoRA branch")
    target_modules: list[str] = field(["q", "v"], "modules that get adapters (comma-separated on the CLI)")

    def validate(self) -> None:
        super().validate()
        if self.lora_r <= 0 or self.lora_alpha <= 0:
            raise ConfigError("lora_r, lora_alpha: must be positive")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules:
            raise ConfigError("target_modules: name at least one module (e.g. q,v)")


def lora_settings(config: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig, TaskType

    return PeftLoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.target_modules), bias="none", task_type=TaskType.SEQ_2_SEQ_LM)


def prepare(model, config: LoraConfig):
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_settings(config))
    peft_model.print_trainable_parameters()
    return peft_model


def describe(config: LoraConfig) -> dict:
    return {"lora": {"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
                     "target_modules": list(config.target_modules)}}


def main(argv: list[str] | None = None) -> dict:
    config = cfg.parse(LoraConfig, argv, description=__doc__)
    return sft.run(config, "lora", prepare, describe)


if __name__ == "__main__":
    sys.exit(common.cli(main))
