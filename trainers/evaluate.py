"""Evaluate a model from the store or the Hub over a whole split: ROUGE-1/2/L/Lsum with bootstrap 95% CIs and
toxicity, written as a schema-checked metrics JSON plus per-example outputs in results/.

    python -m trainers.evaluate --model demo/flan-t5-demo-full
    python -m trainers.evaluate --model demo/flan-t5-demo-lora --base demo/flan-t5-demo-base   # an adapter
    python -m trainers.evaluate --model google/flan-t5-base --dataset dialogsum-local --method base

Multi-reference rows (DialogSum test: summary1..3) score each prediction against its best-matching reference per
ROUGE type (rouge_score's score_multi convention).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Literal

from trainers import common, options
from trainers.options import arg
from workbench import evaluation, modeling, results, toxicity
from workbench.generation import GenerationSettings


@dataclasses.dataclass
class EvaluateRecipe(options.Scoring, options.SplitData):
    model: str = arg("demo/flan-t5-demo-full", "model or adapter to evaluate (store name or Hub id)")
    revision: str = arg("main", "its revision")
    base: str | None = arg(None, "base model when --model is a LoRA adapter (None = the one the adapter names)")
    method: Literal[tuple(sorted(results.METHODS))] | None = arg(None, "label for the run (None = the method in "
                                                                  "the model's metrics.json, else 'eval')")
    # generation
    dtype: Literal["fp32", "bf16", "fp16", "auto"] = arg("fp32", "inference precision")
    batch_size: int = arg(32, "generation batch size", positive=True)
    max_new_tokens: int = arg(64, "summary length limit", positive=True)
    num_beams: int = arg(1, "beam search width (1 = greedy)", positive=True)


ADAPTER = "adapter"  # the name the evaluated adapter is loaded under


def load_for_eval(ref: str, revision: str, base: str | None, dtype: str):
    """(model, tokenizer, base ref) for a full model or a LoRA adapter folder, on this process's device."""
    folder = common.resolve_model(ref, revision)
    device = common.device()
    if (folder / "adapter_config.json").exists():
        base = base or json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        base_folder = common.resolve_model(base, field="base")
        model = modeling.load_adapters(modeling.load_model(base_folder, dtype=dtype, device=device),
                                       {ADAPTER: folder})
        return model, modeling.load_tokenizer(base_folder), base
    return modeling.load_model(folder, dtype=dtype, device=device), modeling.load_tokenizer(folder), ref


def published_record(folder) -> dict:
    """The run record published with the model (its metrics.json), or {} for a model the workbench did not train."""
    path = folder / "metrics.json"
    try:
        record = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def trained_params(model, record: dict) -> dict:
    """What the run that made the model trained, not what the loaded inference copy has requires_grad on (nothing):
    the trainer's own figure from the published record; else, for an adapter, its parameters (the adapter is what
    trained; the saved file can also hold copies of base layers); else 0 (a base model evaluated as it is)."""
    params = record.get("params")
    if isinstance(params, dict) and {"total", "trainable"} <= set(params):
        return params
    total = modeling.count_parameters(model)["total"]
    trainable = sum(p.numel() for name, p in model.named_parameters() if ADAPTER in name.split("."))
    return {"total": total, "trainable": trainable, "trainable_share": trainable / total if total else 0.0}


def main(argv: list[str] | None = None) -> dict:
    config = options.parse(EvaluateRecipe, argv, description=__doc__)
    watch = common.Stopwatch()
    rows = common.load_rows(config.dataset, config.split, limit=config.limit, fields="dataset / split")
    folder = common.resolve_model(config.model, config.revision)  # a wrong name fails here, before any loading
    scorer = toxicity.load_scorer(config.toxicity)
    model, tokenizer, base = load_for_eval(config.model, config.revision, config.base, config.dtype)
    record = published_record(folder)
    method = config.method or record.get("method", "eval")
    run = watch.run_info(model_id=config.model, method=method, base_model=base, dataset=config.dataset,
                         split=config.split, revision=folder.name, params=trained_params(model, record))
    metrics = evaluation.evaluate(
        model, tokenizer, rows, run, scorer=scorer, batch_size=config.batch_size,
        settings=GenerationSettings(max_new_tokens=config.max_new_tokens, num_beams=config.num_beams))
    print(evaluation.format_table([metrics]))
    return metrics


if __name__ == "__main__":
    sys.exit(common.cli(main))
