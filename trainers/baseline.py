"""Score a rule-based baseline over a whole split, written as a run of its own (method `baseline`) so that the
Dashboard shows it beside the models as a reference line.

    python -m trainers.baseline --dataset dialogsum-local              # lead: "... talk about" + the first utterance
    python -m trainers.baseline --dataset dialogsum-local --rule restate
    python -m trainers.baseline --dataset demo

The rules are in workbench/baselines.py. Per-example outputs hold the id, the prediction and its scores; a dataset's
own text (dialogues, references) is only copied there for the generated demo corpus.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Literal

from trainers import common, options
from trainers.options import arg
from workbench import baselines, evaluation, toxicity


@dataclasses.dataclass
class BaselineRecipe(options.Scoring, options.SplitData):
    rule: Literal[tuple(baselines.BASELINES)] = arg("lead", "the rule (see workbench/baselines.py)")


def main(argv: list[str] | None = None) -> dict:
    config = options.parse(BaselineRecipe, argv, description=__doc__)
    watch = common.Stopwatch()
    rows = common.load_rows(config.dataset, config.split, limit=config.limit, fields="dataset / split")
    rule = baselines.BASELINES[config.rule]
    run = watch.run_info(model_id=f"baseline/{config.rule}", method="baseline", base_model="(none: a rule)",
                         dataset=config.dataset, split=config.split,
                         params={"total": 0, "trainable": 0, "trainable_share": 0.0},
                         training={"rule": config.rule, "description": (rule.__doc__ or "").strip() or None})
    metrics = evaluation.evaluate(None, None, rows, run, scorer=toxicity.load_scorer(config.toxicity),
                                  predictions=[rule(row["dialogue"]) for row in rows])
    print(evaluation.format_table([metrics]))
    return metrics


if __name__ == "__main__":
    sys.exit(common.cli(main))
