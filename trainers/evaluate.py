"""Evaluate a model from the store or the Hub over a whole split: ROUGE-1/2/L/Lsum with bootstrap 95% CIs and
toxicity, written as a schema-checked metrics JSON plus per-example outputs in results/.

    python -m trainers.evaluate --model demo/flan-t5-demo-full
    python -m trainers.evaluate --model demo/flan-t5-demo-lora --base demo/flan-t5-demo-base   # an adapter
    python -m trainers.evaluate --model google/flan-t5-base --dataset dialogsum-local --method base
    python -m trainers.evaluate --model demo/flan-t5-demo-lora --engine ctranslate2 --dtype auto   # int8, merged

Multi-reference rows (DialogSum test: summary1..3) score each prediction against its best-matching reference per
ROUGE type (rouge_score's score_multi convention).

`--engine ctranslate2` generates with a CTranslate2 copy of the model (an adapter merged into a copy of its base;
converted once per revision, see workbench/ct2engine.py); --dtype then picks its compute type (fp32: float32,
auto: int8 on CPU) and the record's generation says `engine: ctranslate2`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
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
    min_new_tokens: int = arg(0, "shortest summary, in tokens; a model or adapter that carries a longer minimum of its "
                              "own (generation_config.min_new_tokens: the demo family's summarizers carry 20) keeps "
                              "it", within="[0, 1024]")
    no_repeat_ngram_size: int = arg(GenerationSettings.no_repeat_ngram_size,
                                    "no n-gram of this size twice in a summary (0 = off: plain greedy)",
                                    within="[0, 10]")
    copy_bias: float = arg(0.0, "lean towards the dialogue's own words (workbench.generation.CopyBias; 0 = none, as "
                           "the app serves; docs/RESULTS.md \"Copy bias\" has what 3 does to the demo family)",
                           within="[0, 20]")
    engine: Literal["torch", "ctranslate2"] = arg("torch", "what generates: PyTorch (+ peft), or a CTranslate2 copy "
                                                  "(optional package; adapters merged into the copy)")


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
    settings = GenerationSettings(max_new_tokens=config.max_new_tokens, num_beams=config.num_beams,
                                  no_repeat_ngram_size=config.no_repeat_ngram_size, copy_bias=config.copy_bias,
                                  min_new_tokens=config.min_new_tokens)
    record = published_record(folder)
    method = config.method or record.get("method", "eval")
    if config.engine == "ctranslate2":
        return evaluate_converted(config, watch, rows, folder, scorer, settings, record, method)
    model, tokenizer, base = load_for_eval(config.model, config.revision, config.base, config.dtype)
    run = watch.run_info(model_id=config.model, method=method, base_model=base, dataset=config.dataset,
                         split=config.split, revision=folder.name, params=trained_params(model, record))
    metrics = evaluation.evaluate(model, tokenizer, rows, run, scorer=scorer, batch_size=config.batch_size,
                                  settings=settings)
    print(evaluation.format_table([metrics]))
    return metrics


def evaluate_converted(config: EvaluateRecipe, watch, rows, folder, scorer, settings, record, method) -> dict:
    """--engine ctranslate2: generate with the converted copy, then score and record as the torch path does, the
    record's generation naming the engine, its compute type and the generation time."""
    from workbench import ct2engine

    base, base_folder, adapter = config.model, folder, None
    if (folder / "adapter_config.json").exists():
        base = config.base or json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        base_folder, adapter = common.resolve_model(base, field="base"), folder
    try:  # not installed, or a dtype this device cannot compute: one line naming the options
        compute_type = ct2engine.compute_type(config.dtype, str(common.device()))
    except ct2engine.EngineError as err:
        raise options.ConfigError(f"engine / dtype: {err}") from None
    tokenizer = modeling.load_tokenizer(base_folder)
    model = ct2engine.Ct2Model(ct2engine.converted(base_folder, adapter), tokenizer, compute_type=compute_type,
                               device=str(common.device()))
    params = record.get("params")
    if not (isinstance(params, dict) and {"total", "trainable"} <= set(params)):
        params = trained_params(load_for_eval(config.model, config.revision, config.base, "fp32")[0], record)
    run = watch.run_info(model_id=config.model, method=method, base_model=base, dataset=config.dataset,
                         split=config.split, revision=folder.name, params=params)
    start = time.time()
    predictions = model.generate(evaluation.eval_prompts(rows), settings, batch_size=config.batch_size)
    seconds = round(time.time() - start, 2)
    metrics = evaluation.evaluate(None, tokenizer, rows, run, scorer=scorer, batch_size=config.batch_size,
                                  settings=settings, predictions=predictions, write=False)
    metrics["generation"].update(engine="ctranslate2", dtype=compute_type, seconds=seconds)
    results.write_metrics(metrics)
    print(evaluation.format_table([metrics]))
    return metrics


if __name__ == "__main__":
    sys.exit(common.cli(main))
