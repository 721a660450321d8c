"""Full fine-tuning: every weight of the base model learns to summarize.

    python -m trainers.full                                   # demo base and data, offline -> local/...-full
    python -m trainers.full --config configs/recipes/full.yaml  # the recipe of the served demo model
    python -m trainers.full --model google/flan-t5-base --dataset knkarthick/dialogsum \\
        --output you/flan-t5-base-dialogsum-full --push-to-hub you/flan-t5-base-dialogsum-full
"""

from __future__ import annotations

import dataclasses
import sys

from trainers import common, options, sft


@dataclasses.dataclass
class FullRecipe(sft.SftRecipe):
    """The supervised fine-tuning options, every weight trainable."""


def prepare(model, config: FullRecipe):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def describe(config: FullRecipe) -> dict:
    return {}


def main(argv: list[str] | None = None) -> dict:
    config = options.parse(FullRecipe, argv, description=__doc__)
    return sft.run(config, "full", prepare, describe)


if __name__ == "__main__":
    sys.exit(common.cli(main))
