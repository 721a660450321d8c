"""Supervised fine-tuning on (dialogue -> summary) with transformers' Seq2SeqTrainer, shared by the full and LoRA
recipes: they differ only in which parameters train. Ends with the whole-split evaluation and a publish."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from trainers import common, tracking
from trainers.callbacks import ProgressCallback, progress_path, stop_exit
from trainers import config as cfg
from trainers.config import ConfigError, check_repo_id, check_scorer, field
from workbench import evaluation, modeling, paths, store, toxicity
from workbench.generation import GenerationSettings
from workbench.io import atomic_write_jsonl


@dataclasses.dataclass
class SFTConfig:
    model: str = field("demo/flan-t5-demo-base", "starting model: a local-store name or a Hub id "
                       "(e.g. google/flan-t5-base)")
    revision: str = field("main", "revision of the starting model")
    dataset: str = field("demo", "data: 'demo', 'dialogsum-local' (../shared), a folder/file, or a Hub id "
                         "(e.g. knkarthick/dialogsum)")
    train_split: str = field("train", "split to train on")
    eval_split: str = field("test", "split to evaluate on (the whole split unless --eval-limit; when it names the "
                            "same data as --train-split, e.g. a single file, a seeded tenth of the dialogues is held "
                            "out for evaluation and not trained on)")
    train_limit: int | None = field(None, "use only the first N training rows (quick runs)")
    eval_limit: int | None = field(None, "evaluate only the first N rows (quick runs; the default is all)")
    output: str | None = field(None, "store name to publish the result under (namespace/name; default: "
                               "local/<model>-<dataset>-<method>, never a served demo model)")
    push_to_hub: str | None = field(None, "also push to this Hub repo (token from HF_TOKEN or `hf auth "
                                    "login`; never printed)")
    max_steps: int = field(1000, "optimizer steps (0 = use --epochs)")
    epochs: float = field(1.0, "epochs when --max-steps is 0")
    batch_size: int = field(16, "training batch size per device")
    learning_rate: float = field(5e-4, "peak learning rate (linear decay after warm-up)")
    weight_decay: float = field(0.01, "AdamW weight decay")
    warmup_ratio: float = field(0.05, "share of steps for linear warm-up")
    max_source_length: int = field(512, "truncate prompts to this many tokens")
    max_target_length: int = field(128, "truncate reference summaries to this many tokens")
    group_by_length: bool = field(False, "batch examples of similar length together (less padding, faster). Off by "
                                  "default: where length tracks the topic, as in the demo corpus, each batch then "
                                  "holds one topic and the model learns to ignore the dialogue (measured on the demo "
                                  "corpus after 300 steps: ROUGE-1 0.38 with it, 0.66 without)")
    precision: str = field("auto", "training precision: auto (bf16 autocast where the hardware has it), fp32, bf16")
    save_dtype: str = field("bf16", "dtype of the published weights: bf16, fp16 or fp32")
    seed: int = field(42, "random seed (data order, dropout, init)")
    logging_steps: int = field(25, "log the loss every N steps")
    save_steps: int = field(250, "checkpoint every N steps (a restarted command resumes from the last one)")
    checkpoint_dir: str | None = field(None, "checkpoint folder (default: runs/<method>/<output>)")
    fresh: bool = field(False, "ignore existing checkpoints and start over")
    eval_batch_size: int = field(32, "generation batch size for evaluation")
    max_new_tokens: int = field(64, "summary length limit at evaluation")
    toxicity: str = field("profanity-check", "toxicity scorer: profanity-check (offline) or hf:<model>")
    report_to: str = field("none", "experiment tracker for the training curves: none, trackio (local, offline; "
                           "`trackio show --project dialogue-workbench`), tensorboard or wandb, if installed")

    def validate(self) -> None:
        positive = ["batch_size", "max_source_length", "max_target_length", "logging_steps", "save_steps",
                    "eval_batch_size", "max_new_tokens"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.max_steps < 0 or (self.max_steps == 0 and self.epochs <= 0):
            raise ConfigError("max_steps: must be >= 0, and epochs > 0 when max_steps is 0")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate: must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.precision not in {"auto", "fp32", "bf16"}:
            raise ConfigError(f"precision: expected auto, fp32 or bf16, got {self.precision!r}")
        if self.save_dtype not in {"bf16", "fp16", "fp32"}:
            raise ConfigError(f"save_dtype: expected bf16, fp16 or fp32, got {self.save_dtype!r}")
        for name in ("train_limit", "eval_limit"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        check_scorer("toxicity", self.toxicity)
        tracking.check_report_to("report_to", self.report_to)
        if self.output is not None:
            check_repo_id("output", self.output)
        if self.push_to_hub is not None:
            check_repo_id("push_to_hub", self.push_to_hub)


# Options that do not change what is trained (evaluation, output, logging): a run may resume with other values.
NOT_TRAINING = frozenset({"output", "push_to_hub", "checkpoint_dir", "fresh", "eval_split", "eval_limit",
                          "eval_batch_size", "max_new_tokens", "toxicity", "logging_steps", "save_steps", "save_dtype",
                          "report_to"})


def run(config: SFTConfig, method: str, prepare: Callable, describe: Callable[[object], dict]) -> dict:
    """Train with `prepare(model, config) -> model`, evaluate, publish; returns the metrics dict.

    `describe(config)` returns the method-specific part of the training record (e.g. LoRA rank).
    """
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

    watch = common.Stopwatch()
    common.seed_everything(config.seed)
    modeling.quiet_transformers()
    if config.output is None:
        config.output = common.default_output(method, config.model, config.dataset)
        print(f"[{method}] publishing to {config.output} (choose another name with --output)")

    # Everything that can be wrong with the inputs fails here, before any training.
    train_rows, eval_rows, split_info = common.load_train_eval(config)
    source = common.resolve_model(config.model, config.revision)
    tokenizer = modeling.load_tokenizer(source)
    scorer = toxicity.load_scorer(config.toxicity)
    ckpt, run_id = start_run(config, method, train_rows)  # refuses another run's checkpoints before any model loads
    model = prepare(modeling.load_model(source, dtype="fp32", device=common.device()), config)
    model.train()
    params = modeling.count_parameters(model)
    print(f"[{method}] {config.model}: {params['trainable']:,} trainable of {params['total']:,} parameters "
          f"({100 * params['trainable_share']:.2f}%); {len(train_rows)} training rows, {len(eval_rows)} evaluation "
          f"rows ({split_info['note']})")

    args = training_arguments(config, ckpt, run_id)
    progress = ProgressCallback(progress_path(ckpt))  # live curve for the Train tab; SIGTERM = checkpoint and stop
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=common.tokenize_pairs(tokenizer, train_rows, config.max_source_length,
                                            config.max_target_length),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=8),
        processing_class=tokenizer,
        callbacks=[progress],
    )
    last = common.last_checkpoint(ckpt)
    if last and common.is_main_process():
        print(f"[{method}] resuming from {last} (run {run_id})")
    trainer.train(resume_from_checkpoint=last)
    main_process = trainer.is_world_process_zero()
    common.end_distributed()  # training is over: no more collectives
    if progress.stopped:  # a checkpoint is written; a partial model is neither evaluated nor published
        raise SystemExit(stop_exit(trainer.state.global_step, ckpt))
    if not main_process:
        return {}  # data-parallel workers are done; the main process evaluates and publishes once

    final = ckpt / "final"
    common.store_weights(trainer.model, final, config.save_dtype, base_ref=config.model)
    tokenizer.save_pretrained(final)
    training = {
        "method": method, "steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0, 3),
        "batch_size": config.batch_size, "learning_rate": config.learning_rate, "precision": config.precision,
        "group_by_length": config.group_by_length,
        "dataset": config.dataset, "split": config.train_split, "n": len(train_rows), "split_info": split_info,
        "seed": config.seed, **cfg.recipe_record(config),
        "final_loss": next((e["loss"] for e in reversed(trainer.state.log_history) if "loss" in e), None),
        "train_seconds": round(watch.seconds, 1), "log_file": f"logs/{run_id}.jsonl",
        "resumed_from": Path(last).name if last else None, "processes": args.world_size, **describe(config),
    }
    atomic_write_jsonl(paths.RESULTS_DIR / "logs" / f"{run_id}.jsonl", common.log_history_rows(trainer.state.log_history))
    return finish(config, method, trainer.model.eval(), tokenizer, eval_rows, split_info, scorer=scorer,
                  params=params, training=training, watch=watch, run_id=run_id, ckpt=ckpt)


def start_run(config: SFTConfig, method: str, train_rows: list[dict]) -> tuple[Path, str]:
    """The run's checkpoint folder (prepared by the main process) and its run id. A folder holding an unfinished run
    with other training settings is refused here (common.guard_resume), before any model loads."""
    ckpt = common.checkpoint_dir(config, method)
    texts = [f"{r['dialogue']}\n{r['summary']}" for r in train_rows]
    settings = common.training_settings(config, NOT_TRAINING, method=method,
                                        train_data=common.data_fingerprint(texts))
    if common.is_main_process():
        common.prepare_checkpoint_dir(ckpt, config.fresh)
        common.guard_resume(ckpt, settings, config.fresh)
        common.last_checkpoint(ckpt, remove_incomplete=True)  # a run killed while saving leaves half a checkpoint
    return ckpt, common.run_id_for(ckpt, method)  # waits for the main process


def training_arguments(config: SFTConfig, ckpt: Path, run_id: str = ""):
    """transformers' arguments for the recipe. `disable_tqdm=False` is explicit: left unset, transformers hides the
    progress bar whenever its logging is quieter than WARNING, which modeling.quiet_transformers() makes it."""
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=str(ckpt),
        max_steps=config.max_steps if config.max_steps > 0 else -1,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type="linear",
        bf16=common.use_bf16(config.precision), use_cpu=not torch.cuda.is_available(),
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        **tracking.trainer_arguments(config.report_to, run_id),
        disable_tqdm=False,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )  # under torchrun / accelerate launch the process group is already joined (common.is_main_process)


def finish(config: SFTConfig, method: str, model, tokenizer, eval_rows: list[dict], split_info: dict, *, scorer,
           params: dict, training: dict, watch: common.Stopwatch, run_id: str, ckpt: Path) -> dict:
    """Evaluate on the evaluation rows, publish and record (common.finish_run)."""
    def evaluate() -> dict:
        return evaluation.evaluate(
            model, tokenizer, eval_rows, model_id=config.output, method=method, base_model=config.model,
            dataset=config.dataset, split=config.eval_split, split_info=split_info,
            settings=GenerationSettings(max_new_tokens=config.max_new_tokens), scorer=scorer, params=params,
            training=training, batch_size=config.eval_batch_size, started_at=watch.started_at,
            started_clock=watch.clock, run_id=run_id, write=False,
        )

    def card(metrics: dict) -> str:
        return store.model_card(config.output, base_model=config.model, method=method, dataset=config.dataset,
                                metrics=metrics["metrics"], training=training, params=params)

    metrics = common.finish_run(run_id=run_id, ckpt=ckpt, folder=ckpt / "final", output=config.output,
                                push_to_hub=config.push_to_hub, evaluate=evaluate, card=card)
    print(evaluation.format_table([metrics]))
    print(f"[{method}] published {config.output} revision {metrics['revision']} (run {run_id})")
    return metrics
