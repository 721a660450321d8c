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
from trainers.options import arg


@dataclasses.dataclass
class FullRecipe(sft.SftRecipe):
    """The supervised fine-tuning options, every weight trainable."""

    copy_bias: float | None = arg(None, "train and decode with this copy bias (workbench.generation.copy_boost: the "
                                  "dialogue's tokens get it added to their logits, the next token of a copied span "
                                  "three times it, over the dialogue as the summary retells it where the tokenizer "
                                  "allows); the model keeps it as config.copy_bias (and config.copy_retell) and every "
                                  "path that generates from it adds it. None = the starting model's (0 for any Hub "
                                  "model)",
                                  within="[0, 20]")
    copy_span: int | None = arg(None, "how many of the last tokens written the copy pointer matches against the "
                                "dialogue (workbench.generation.match_lengths): 1 follows every place the last token "
                                "occurs, more only the places that match the most of them. None = the starting "
                                "model's (1 if it has none)", within="[1, 16]")
    no_repeat_ngram_size: int | None = arg(None, "no n-gram of this size twice in the trained model's summaries, kept "
                                           "in its generation_config (as Hub summarizers carry one) and applied "
                                           "wherever the settings ask for a larger one or none "
                                           "(workbench.generation.model_no_repeat_ngram_size). None = the "
                                           "workbench's setting alone (3)", within="[1, 10]")


def prepare(model, config: FullRecipe):
    for p in model.parameters():
        p.requires_grad_(True)
    if config.no_repeat_ngram_size is not None:  # decoding only: the training is the same with or without it
        model.generation_config.no_repeat_ngram_size = config.no_repeat_ngram_size
    return model  # the copy bias, if any, is set by sft.run (it needs the tokenizer)


def describe(config: FullRecipe) -> dict:
    chosen = ("copy_bias", "copy_span", "min_new_tokens", "no_repeat_ngram_size")
    return {k: getattr(config, k) for k in chosen if getattr(config, k) is not None}


def main(argv: list[str] | None = None) -> dict:
    config = options.parse(FullRecipe, argv, description=__doc__)
    return sft.run(config, "full", prepare, describe)


if __name__ == "__main__":
    sys.exit(common.cli(main))
