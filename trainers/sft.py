"""Supervised fine-tuning on (dialogue -> summary) with transformers' Seq2SeqTrainer, shared by the full and LoRA
recipes: they differ only in which parameters train. `run` reads as the recipe: setup (data, tokenizer, scorer,
checkpoint folder, model) -> train -> save and record -> evaluate and publish."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import torch

from trainers import common, options
from trainers.options import arg
from workbench import evaluation, generation, modeling, store, toxicity
from workbench.generation import GenerationSettings


@dataclasses.dataclass
class SftRecipe(options.Tracking, options.Weights, options.Checkpoints, options.TrainerOptions, options.Evaluation,
                options.Publishing, options.TrainData):
    model: str = arg("demo/flan-t5-demo-base", "starting model: a local-store name or a Hub id "
                     "(e.g. google/flan-t5-base)")
    revision: str = arg("main", "revision of the starting model")
    epochs: float = arg(1.0, "epochs when --max-steps is 0")
    weight_decay: float = arg(0.01, "AdamW weight decay")
    max_source_length: int = arg(512, "truncate prompts to this many tokens", positive=True)
    max_target_length: int = arg(128, "truncate reference summaries to this many tokens", positive=True)
    group_by_length: bool = arg(False, "batch examples of similar length together: less padding, but see "
                                "docs/TRAINERS.md for why it is off")
    min_new_tokens: int | None = arg(None, "shortest summary the trained model writes, in tokens: kept as a full "
                                     "model's generation_config.min_new_tokens, or in an adapter's folder as its own "
                                     "generation_config.json (workbench.generation.model_min_new_tokens); the "
                                     "prompted base keeps its own. None = the starting model's (none for FLAN-T5 and "
                                     "the demo base); 0 = none", within="[0, 1024]")
    interpolate: float = arg(1.0, "after training, move every weight back towards the starting model's: "
                             "interpolate x trained + (1 - interpolate) x start (WiSE-FT, Wortsman et al. 2022; a "
                             "LoRA adapter's update is scaled by it). Fine-tunes of a small model on little data keep "
                             "more of what the start could do (docs/RESULTS.md, \"Interpolated with the start\"). "
                             "1 = the trained weights as they are", within="(0, 1]")


# Options that do not change what is trained (evaluation, output, logging): a run may resume with other values.
NOT_TRAINING = frozenset({"output", "push_to_hub", "checkpoint_dir", "fresh", "eval_split", "eval_limit", "interpolate",
                          "eval_batch_size", "max_new_tokens", "toxicity", "logging_steps", "save_steps", "save_dtype",
                          "report_to", "no_repeat_ngram_size"})


@dataclasses.dataclass
class Setup:
    """What the setup phase checked and loaded, before any model: every input error surfaces there."""

    train_rows: list[dict]
    eval_rows: list[dict]
    split_info: dict
    source: Path
    tokenizer: object
    scorer: object
    ckpt: Path
    run_id: str


def run(config: SftRecipe, method: str, prepare: Callable, describe: Callable[[object], dict]) -> dict:
    """Train with `prepare(model, config) -> model`, evaluate, publish; returns the metrics record.

    `describe(config)` returns the method-specific part of the training record (e.g. LoRA rank).
    """
    watch = common.start(config, method, config.model, config.dataset)
    s = setup(config, method)
    model = prepare(modeling.load_model(s.source, dtype="fp32", device=common.device()), config)
    if config.min_new_tokens is not None:
        generation.set_model_min_new_tokens(model, config.min_new_tokens)
    if getattr(config, "copy_bias", None) is not None:  # a full fine-tune that trains with a copy bias of its own
        generation.set_copy_bias(model, config.copy_bias, s.tokenizer, getattr(config, "copy_span", None))
    params = modeling.count_parameters(model)
    print(f"[{method}] {config.model}: {params['trainable']:,} trainable of {params['total']:,} parameters "
          f"({100 * params['trainable_share']:.2f}%); {len(s.train_rows)} training rows, {len(s.eval_rows)} "
          f"evaluation rows ({s.split_info['note']})")
    trainer = build_trainer(config, model, s)
    last = common.fit(trainer, s.ckpt, method, s.run_id)
    if not common.leave(trainer):
        return {}  # data-parallel workers are done; the main process evaluates and publishes once
    interpolate_to_start(trainer.model, s.source, config.interpolate)
    final = common.save_final(trainer.model, s.tokenizer, s.ckpt, config.save_dtype, base_ref=config.model)
    training = common.training_record(
        config, trainer, method, watch=watch, run_id=s.run_id, resumed_from=last,
        epochs=round(trainer.state.epoch or 0, 3), precision=config.precision,
        group_by_length=config.group_by_length, dataset=config.dataset, split=config.train_split,
        n=len(s.train_rows), split_info=s.split_info, processes=trainer.args.world_size, **describe(config),
        **({"interpolate": config.interpolate} if config.interpolate != 1 else {}))
    return finish(config, method, trainer.model.eval(), s, final, params=params, training=training, watch=watch)


@torch.no_grad()
def interpolate_to_start(model, start: Path, weight: float) -> None:
    """WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", 2022): every trained weight becomes
    `weight` x trained + (1 - weight) x its value in the starting model at `start`. A LoRA adapter starts at zero
    (B = 0), so its B matrices are scaled by `weight`: the merged weights are then exactly that interpolation. 1
    leaves the model as it is."""
    if weight == 1:
        return
    if hasattr(model, "peft_config"):
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_B" in name:
                p.mul_(weight)
        return
    begin = modeling.load_model(start, dtype="fp32", device="cpu").state_dict()
    for name, p in model.named_parameters():
        p.lerp_(begin[name].to(p.device, p.dtype), 1 - weight)


def setup(config: SftRecipe, method: str) -> Setup:
    """Data, starting model, tokenizer, scorer and checkpoint folder; everything that can be wrong with the inputs
    fails here, before a model loads (another run's checkpoints are refused by common.start_checkpoints)."""
    train_rows, eval_rows, split_info = common.load_train_eval(config)
    source = common.resolve_model(config.model, config.revision)
    tokenizer = modeling.load_tokenizer(source)
    scorer = toxicity.load_scorer(config.toxicity)
    texts = [f"{r['dialogue']}\n{r['summary']}" for r in train_rows]
    ckpt, run_id = common.start_checkpoints(config, method, NOT_TRAINING, texts)
    return Setup(train_rows, eval_rows, split_info, source, tokenizer, scorer, ckpt, run_id)


def build_trainer(config: SftRecipe, model, s: Setup):
    """transformers' Seq2SeqTrainer (with the model's copy bias, if it has one) over the tokenised training pairs."""
    from transformers import DataCollatorForSeq2Seq

    model.train()
    return copy_biased_trainer()(
        model=model, args=training_arguments(config, s.ckpt, s.run_id),
        train_dataset=common.tokenize_pairs(s.tokenizer, s.train_rows, config.max_source_length,
                                            config.max_target_length),
        data_collator=DataCollatorForSeq2Seq(s.tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=8),
        processing_class=s.tokenizer,
    )


@functools.cache
def copy_biased_trainer():
    """The Seq2SeqTrainer class the recipes train with (made on first use: transformers' Trainer loads after the
    command line is parsed)."""
    from transformers import Seq2SeqTrainer

    class CopyBiasedTrainer(Seq2SeqTrainer):
        """Seq2SeqTrainer whose loss reads the logits the model decodes with: a model that carries a copy bias
        (`config.copy_bias`, workbench.generation.copy_boost) is trained with it added, so that it learns to lean
        on the bias where a summary restates the dialogue and to outweigh it where it must not copy. Without one
        it is Seq2SeqTrainer's own loss."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            bias = generation.model_copy_bias(model)
            if not bias:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            if "decoder_input_ids" not in inputs:
                inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels=labels)
            outputs = model(**inputs)
            pad_id = self.processing_class.pad_token_id
            # the bias on every piece of the dialogue, as the family was trained; decoding leaves the pieces inside a
            # word alone (`model_copy_inner`): trained that way too, fine-tunes scored less (docs/RESULTS.md, "Word
            # starts only")
            logits = generation.copy_biased_logits(outputs.logits.float(), inputs["input_ids"],
                                                   inputs["decoder_input_ids"], bias, pad_id,
                                                   generation.model_copy_retell(model),
                                                   generation.model_copy_span(model))
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                                     reduction="sum" if num_items_in_batch else "mean")
            if num_items_in_batch:
                loss = loss / num_items_in_batch
            return (loss, outputs) if return_outputs else loss

    return CopyBiasedTrainer


def training_arguments(config: SftRecipe, ckpt: Path, run_id: str = ""):
    """Seq2SeqTrainingArguments of the recipe: the shared ones (common.trainer_arguments) with epochs, weight decay,
    a linear schedule and the batching order."""
    return common.trainer_arguments(
        config, ckpt, run_id, num_train_epochs=config.epochs, weight_decay=config.weight_decay,
        lr_scheduler_type="linear", remove_unused_columns=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random")


def finish(config: SftRecipe, method: str, model, s: Setup, final: Path, *, params: dict, training: dict,
           watch: common.Stopwatch) -> dict:
    """Evaluate on the evaluation rows, publish and record (common.finish_run)."""
    def evaluate() -> dict:
        run = watch.run_info(model_id=config.output, method=method, base_model=config.model, dataset=config.dataset,
                             split=config.eval_split, split_info=s.split_info, params=params, training=training,
                             run_id=s.run_id)
        return evaluation.evaluate(model, s.tokenizer, s.eval_rows, run, scorer=s.scorer, write=False,
                                   settings=GenerationSettings(max_new_tokens=config.max_new_tokens),
                                   batch_size=config.eval_batch_size)

    def card(metrics: dict) -> str:
        return store.model_card(config.output, base_model=config.model, method=method, dataset=config.dataset,
                                metrics=metrics["metrics"], training=training, params=params)

    metrics = common.finish_run(run_id=s.run_id, ckpt=s.ckpt, folder=final, output=config.output,
                                push_to_hub=config.push_to_hub, evaluate=evaluate, card=card)
    print(evaluation.format_table([metrics]))
    print(f"[{method}] published {config.output} revision {metrics['revision']} (run {s.run_id})")
    return metrics
