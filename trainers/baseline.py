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

from trainers import common
from trainers import config as cfg
from trainers.config import ConfigError, check_scorer, field
from workbench import baselines, evaluation, toxicity


@dataclasses.dataclass
class BaselineConfig:
    rule: str = field("lead", f"the rule: {', '.join(baselines.BASELINES)} (see workbench/baselines.py)")
    dataset: str = field("demo", "dataset: demo, dialogsum-local, a folder/file or a Hub id")
    split: str = field("test", "split (the whole split is used unless --limit)")
    limit: int | None = field(None, "only the first N rows")
    toxicity: str = field("profanity-check", "toxicity scorer: profanity-check or hf:<model>")

    def validate(self) -> None:
        if self.rule not in baselines.BASELINES:
            raise ConfigError(f"rule: expected one of {', '.join(baselines.BASELINES)}, got {self.rule!r}")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError("limit: must be positive")
        check_scorer("toxicity", self.toxicity)


def main(argv: list[str] | None = None) -> dict:
    config = cfg.parse(BaselineConfig, argv, description=__doc__)
    watch = common.Stopwatch()
    rows = common.load_rows(config.dataset, config.split, limit=config.limit, fields="dataset / split")
    rule = baselines.BASELINES[config.rule]
    predictions = [rule(row["dialogue"]) for row in rows]
    metrics = evaluation.evaluate(
        None, None, rows, model_id=f"baseline/{config.rule}", method="baseline", base_model="(none: a rule)",
        dataset=config.dataset, split=config.split, scorer=toxicity.load_scorer(config.toxicity),
        params={"total": 0, "trainable": 0, "trainable_share": 0.0}, predictions=predictions,
        training={"rule": config.rule, "description": (rule.__doc__ or "").strip() or None},
        started_at=watch.started_at, started_clock=watch.clock,
    )
    print(evaluation.format_table([metrics]))
    return metrics


if __name__ == "__main__":
    sys.exit(common.cli(main))
