"""How many of a run's summary words are made up: words that no DialogSum dialogue or summary has.

    python -m trainers.made_up_words --runs full-20261207-080755-05a019 lora-20261206-190904-6900f8
    python -m trainers.made_up_words --runs results/outputs/full-20261207-080755-05a019.jsonl   # a file of outputs

A small summarizer with a small vocabulary spells a word it does not know in pieces, and its copy bias can glue the
start of one word to the end of another ("divorcesuade"; docs/RESULTS.md, "Word starts only"). Each run's
per-example outputs (results/outputs/<run>.jsonl) are read and their words (`scoring.letter_words`) looked up in the
words of every dialogue and reference of the local DialogSum copy (dev and test, `--dataset dialogsum-local`,
../shared; nothing is downloaded). Printed per run: the share of made-up words, how many summaries hold one, how
many hold a lone letter (`scoring.lone_letters`: a word begun and not finished, which a lookup of words cannot see),
and the commonest made-up words. Nothing is written.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
from pathlib import Path

from trainers import common, options
from trainers.options import ConfigError, arg
from workbench import data, paths, scoring


@dataclasses.dataclass
class MadeUpRecipe(options.Options):
    runs: list[str] = arg([], "run ids (their results/outputs/<run>.jsonl) or paths of per-example output files")
    dataset: str = arg(data.SHARED, "where the known words come from: every dialogue and reference of its splits")
    splits: list[str] = arg(["validation", "test"], "the splits read for known words")
    examples: int = arg(8, "commonest made-up words to print per run", within="[0, 100]")

    def __post_init__(self) -> None:
        if not self.runs:
            raise ConfigError("runs: name at least one run id or outputs file")


def known_words(dataset: str, splits: list[str]) -> set[str]:
    known: set[str] = set()
    for split in splits:
        for row in data.load_dialogues(dataset, split):
            for text in [row["dialogue"], *row["references"]]:
                known.update(scoring.letter_words(text))
    return known


def outputs_file(run: str) -> Path:
    path = Path(run)
    if path.suffix == ".jsonl":
        return path
    return paths.RESULTS_DIR / "outputs" / f"{run}.jsonl"


def main(argv: list[str] | None = None) -> dict:
    config = options.parse(MadeUpRecipe, argv, description=__doc__)
    files = {run: outputs_file(run) for run in config.runs}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise ConfigError(f"runs: no per-example outputs at {', '.join(missing)}")
    known = known_words(config.dataset, config.splits)
    report = {}
    for run, path in files.items():
        predictions = [json.loads(line)["prediction"] for line in path.read_text().splitlines() if line.strip()]
        share, unknown = scoring.made_up_words(predictions, known)
        holding = sum(bool(set(scoring.letter_words(p)) - known) for p in predictions)
        lone = sum(bool(scoring.lone_letters(p)) for p in predictions)
        common_ = collections.Counter(unknown).most_common(config.examples)
        report[run] = {"share": share, "summaries": len(predictions), "holding": holding, "lone_letters": lone}
        print(f"{run}: {100 * share:.1f}% of words made up; {holding} of {len(predictions)} summaries hold one, "
              f"{lone} a lone letter (\"if he c.\")"
              + (f"; commonest made up: {', '.join(w for w, _ in common_)}" if common_ else ""))
    return report


if __name__ == "__main__":
    sys.exit(common.cli(main))
