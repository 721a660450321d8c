"""Build the demo family's base model: train a T5 tokenizer on the demo corpus, then pretrain a FLAN-T5-shaped model
from scratch on the dialogues only (never the summaries) with T5's span-corruption objective, mixed with prefix-LM
continuation as in T5's LM adaptation. The result writes fluent dialogue but has never seen a summary: an
un-adapted base for prompting, fine-tuning and LoRA.

    python -m trainers.pretrain                                       # -> local/t5-scratch-demo-pretrain
    python -m trainers.pretrain --config configs/recipes/pretrain.yaml  # the served demo/flan-t5-demo-base

On the demo dataset the training dialogues are joined by `extra_dialogues` more from the same generator (dialogues
only, none equal to a validation or test dialogue): a base pretrained on 1,700 dialogues overfits them and learns
little that transfers, while on ~20,000 its pretraining loss and the fine-tuned models it yields are both better.
"""

from __future__ import annotations

import dataclasses
import random
import sys

import torch

from trainers import common
from trainers import config as cfg
from trainers.callbacks import ProgressCallback, progress_path, stop_exit
from trainers.config import ConfigError, check_repo_id, check_scorer, field
from workbench import data, evaluation, modeling, paths, store, toxicity
from workbench.generation import GenerationSettings
from workbench.io import atomic_write_jsonl


@dataclasses.dataclass
class PretrainConfig:
    dataset: str = field("demo", "dialogues to pretrain on (their summaries are never used)")
    split: str = field("train", "split whose dialogues are used")
    eval_split: str = field("test", "split for the zero-shot evaluation of the finished base")
    eval_limit: int | None = field(None, "evaluate only the first N rows (default: all)")
    output: str | None = field(None, "store name of the base model (default: local/t5-scratch-<dataset>-pretrain, "
                               "never the served demo base)")
    extra_dialogues: int | None = field(None, "extra synthetic dialogues to pretrain on (default: 20000 for the demo "
                                               "dataset, 0 otherwise; never equal to an evaluation dialogue)")
    open_share: float = field(0.0, "share of the extra dialogues that are open-vocabulary ones (workbench.opencorpus)")
    vocab_size: int = field(4000, "tokenizer vocabulary size, including the 100 sentinels")
    max_steps: int = field(2000, "optimizer steps")
    batch_size: int = field(16, "batch size")
    learning_rate: float = field(5e-4, "peak learning rate (2e-3 gave a lower-quality base: encoder states all "
                                       "pointing one way, and worse fine-tunes from it)")
    warmup_ratio: float = field(0.04, "share of steps for warm-up")
    max_length: int = field(160, "tokens of dialogue per example (a random window of longer dialogues)")
    noise_density: float = field(0.15, "share of tokens masked by span corruption")
    mean_span_length: float = field(3.0, "mean length of a masked span")
    prefix_lm_share: float = field(0.5, "share of examples that are prefix-LM continuation instead of span corruption")
    precision: str = field("auto", "auto (bf16 autocast where available), fp32 or bf16")
    save_dtype: str = field("bf16", "dtype of the published weights")
    seed: int = field(0, "random seed")
    logging_steps: int = field(50, "log every N steps")
    save_steps: int = field(500, "checkpoint every N steps")
    checkpoint_dir: str | None = field(None, "checkpoint folder (default: runs/pretrain/<output>)")
    fresh: bool = field(False, "ignore existing checkpoints")
    toxicity: str = field("profanity-check", "toxicity scorer for the evaluation")

    def validate(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(f"vocab_size: at least 300, got {self.vocab_size}")
        if not 0 < self.noise_density < 1:
            raise ConfigError(f"noise_density: must be in (0, 1), got {self.noise_density}")
        if not 0 <= self.prefix_lm_share <= 1:
            raise ConfigError(f"prefix_lm_share: must be in [0, 1], got {self.prefix_lm_share}")
        for name in ("max_steps", "batch_size", "max_length", "logging_steps", "save_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        if not 0 <= self.open_share <= 1:
            raise ConfigError(f"open_share: must be in [0, 1], got {self.open_share}")
        if self.extra_dialogues is not None and self.extra_dialogues < 0:
            raise ConfigError("extra_dialogues: must be 0 or more")
        if self.eval_limit is not None and self.eval_limit <= 0:
            raise ConfigError("eval_limit: must be positive")
        if self.precision not in {"auto", "fp32", "bf16"}:
            raise ConfigError(f"precision: expected auto, fp32 or bf16, got {self.precision!r}")
        if self.save_dtype not in {"bf16", "fp16", "fp32"}:
            raise ConfigError(f"save_dtype: expected bf16, fp16 or fp32, got {self.save_dtype!r}")
        check_scorer("toxicity", self.toxicity)
        if self.output is not None:
            check_repo_id("output", self.output)


# ------------------------------------------------------------------------------------------------ objectives


def _partition(total: int, parts: int, rng: random.Random) -> list[int]:
    """`parts` positive integers summing to `total`, uniformly at random."""
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total])]


def span_corruption(ids: list[int], sentinels: list[int], eos: int, rng: random.Random,
                    noise_density: float = 0.15, mean_span_length: float = 3.0) -> tuple[list[int], list[int]]:
    """T5's objective: drop random spans from the input, replacing each by a sentinel; the target lists the spans.

    ids:    a b c d e f g h        -> input:  a b <0> e f g <1>     target: <0> c d <1> h <2> </s>
    """
    n = len(ids)
    noise = min(max(1, round(n * noise_density)), n - 1)
    spans = max(1, min(round(noise / mean_span_length), noise, n - noise, len(sentinels) - 1))
    noise_lengths, keep_lengths = _partition(noise, spans, rng), _partition(n - noise, spans, rng)
    inputs, targets, pos = [], [], 0
    for i, (keep, drop) in enumerate(zip(keep_lengths, noise_lengths)):
        inputs += ids[pos : pos + keep] + [sentinels[i]]
        targets += [sentinels[i]] + ids[pos + keep : pos + keep + drop]
        pos += keep + drop
    return inputs + [eos], targets + [sentinels[spans], eos]


def prefix_lm(ids: list[int], eos: int, rng: random.Random, max_target: int = 64) -> tuple[list[int], list[int]]:
    """Continuation: the model reads the start of a dialogue and writes what comes next."""
    cut = rng.randint(max(1, len(ids) // 4), max(1, 3 * len(ids) // 4))
    return ids[:cut] + [eos], ids[cut : cut + max_target] + [eos]


class PretrainCollator:
    """Turns tokenised dialogues into a padded batch of (corrupted input, target) pairs, fresh noise every time."""

    def __init__(self, tokenizer, config: PretrainConfig, seed: int):
        self.tokenizer = tokenizer
        self.config = config
        self.rng = random.Random(seed)
        self.sentinels = [tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(modeling.SENTINELS)]

    def __call__(self, features: list[dict]) -> dict:
        pairs = []
        for f in features:
            ids = [t for t in f["input_ids"] if t != self.tokenizer.eos_token_id]
            if len(ids) > self.config.max_length:  # a random window: every part of a dialogue gets seen
                start = self.rng.randrange(len(ids) - self.config.max_length + 1)
                ids = ids[start : start + self.config.max_length]
            if self.rng.random() < self.config.prefix_lm_share:
                pairs.append(prefix_lm(ids, self.tokenizer.eos_token_id, self.rng))
            else:
                pairs.append(span_corruption(ids, self.sentinels, self.tokenizer.eos_token_id, self.rng,
                                             self.config.noise_density, self.config.mean_span_length))
        return {"input_ids": _pad([p[0] for p in pairs], 0), "attention_mask": _pad([[1] * len(p[0]) for p in pairs], 0),
                "labels": _pad([p[1] for p in pairs], -100)}


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


# ------------------------------------------------------------------------------------------------ recipe


def pretraining_dialogues(config: PretrainConfig, rows: list[dict]) -> list[str]:
    """The dialogues of the training split, plus `extra_dialogues` synthetic ones (demo dataset by default) that
    differ from every dialogue of the dataset's validation and test splits."""
    dialogues = [r["dialogue"] for r in rows]
    extra = config.extra_dialogues if config.extra_dialogues is not None else (20000 if config.dataset == "demo" else 0)
    if extra:
        from workbench import corpus

        held_out = set()
        for split in ("validation", "test"):
            try:
                held_out |= {r["dialogue"] for r in common.load_rows(config.dataset, split)}
            except data.DataError:  # a dataset without that split has nothing to hold out
                pass
        dialogues += corpus.extra_dialogues(extra, seed=config.seed + 1, exclude=held_out | set(dialogues),
                                            open_share=config.open_share)
    return dialogues


# Options that do not change what is trained (evaluation, output, logging): a run may resume with other values.
NOT_TRAINING = frozenset({"output", "checkpoint_dir", "fresh", "eval_split", "eval_limit", "toxicity",
                          "logging_steps", "save_steps", "save_dtype"})


def training_arguments(config: PretrainConfig, ckpt):
    """transformers' arguments for pretraining; the progress bar is on explicitly (quiet_transformers() would
    otherwise turn it off with the logs)."""
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=str(ckpt), max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, warmup_steps=config.warmup_ratio, lr_scheduler_type="cosine",
        weight_decay=0.01, bf16=common.use_bf16(config.precision), use_cpu=not torch.cuda.is_available(),
        logging_steps=config.logging_steps, save_steps=config.save_steps, save_total_limit=2, seed=config.seed,
        report_to=[], disable_tqdm=False, remove_unused_columns=False, dataloader_num_workers=0,
    )


def main(argv: list[str] | None = None) -> dict:
    import datasets
    from transformers import Seq2SeqTrainer

    config = cfg.parse(PretrainConfig, argv, description=__doc__)
    watch = common.Stopwatch()
    common.seed_everything(config.seed)
    modeling.quiet_transformers()
    if config.output is None:
        config.output = common.default_output("pretrain", "t5-scratch", config.dataset)
        print(f"[pretrain] publishing to {config.output} (choose another name with --output)")
    rows = common.load_rows(config.dataset, config.split, fields="dataset / split")
    eval_rows = common.load_rows(config.dataset, config.eval_split, limit=config.eval_limit,
                                 fields="dataset / eval_split")
    scorer = toxicity.load_scorer(config.toxicity)

    ckpt = common.checkpoint_dir(config, "pretrain")
    settings = common.training_settings(config, NOT_TRAINING, method="pretrain",
                                        train_data=common.data_fingerprint([r["dialogue"] for r in rows]))
    if common.is_main_process():
        common.prepare_checkpoint_dir(ckpt, config.fresh)
        common.guard_resume(ckpt, settings, config.fresh)  # its tokenizer and checkpoints came from these settings
        common.last_checkpoint(ckpt, remove_incomplete=True)  # a run killed while saving leaves half a checkpoint
    run_id = common.run_id_for(ckpt, "base")
    texts = pretraining_dialogues(config, rows)
    tok_dir = ckpt / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        tokenizer = modeling.load_tokenizer(tok_dir)
    else:
        # The tokenizer learns its pieces from exactly the text the model is pretrained on: a piece learned from other
        # text (summaries, prompt templates) would keep a random embedding that a LoRA adapter can never fix (measured
        # on an earlier build: 5% of summary tokens were such pieces, and a q/v LoRA plateaued below the base).
        tokenizer = modeling.train_tokenizer(texts, vocab_size=config.vocab_size)
        tokenizer.save_pretrained(tok_dir)
    print(f"[pretrain] tokenizer: {len(tokenizer)} tokens; {len(texts)} dialogues "
          f"({len(rows)} from {config.dataset}/{config.split}, {len(texts) - len(rows)} extra)")

    model = modeling.build_model(modeling.demo_config(len(tokenizer)), seed=config.seed).to(common.device())
    params = modeling.count_parameters(model)
    print(f"[pretrain] model: {params['total']:,} parameters, architecture {modeling.DEMO_ARCHITECTURE}")
    dialogues = tokenizer(texts, truncation=True, max_length=512)
    train = datasets.Dataset.from_dict({"input_ids": dialogues["input_ids"]})

    progress = ProgressCallback(progress_path(ckpt))  # live curve for the Train tab; SIGTERM = checkpoint and stop
    trainer = Seq2SeqTrainer(model=model, args=training_arguments(config, ckpt), train_dataset=train,
                             data_collator=PretrainCollator(tokenizer, config, config.seed), callbacks=[progress])
    last = common.last_checkpoint(ckpt)
    if last:
        print(f"[pretrain] resuming from {last} (run {run_id})")
    trainer.train(resume_from_checkpoint=last)
    if progress.stopped:  # a checkpoint is written; a partial model is neither evaluated nor published
        raise SystemExit(stop_exit(trainer.state.global_step, ckpt))

    final = ckpt / "final"
    common.store_weights(trainer.model, final, config.save_dtype)
    tokenizer.save_pretrained(final)
    model = trainer.model.eval()
    training = {"method": "pretrain", "objective": "span corruption + prefix LM on dialogues only",
                "steps": trainer.state.global_step, "batch_size": config.batch_size,
                "learning_rate": config.learning_rate, "dataset": config.dataset, "split": config.split,
                "n": len(rows), "extra_dialogues": len(texts) - len(rows), "seed": config.seed, "vocab_size": len(tokenizer),
                "final_loss": next((e["loss"] for e in reversed(trainer.state.log_history) if "loss" in e), None),
                "train_seconds": round(watch.seconds, 1), "log_file": f"logs/{run_id}.jsonl",
                "architecture": modeling.DEMO_ARCHITECTURE, **cfg.recipe_record(config)}
    atomic_write_jsonl(paths.RESULTS_DIR / "logs" / f"{run_id}.jsonl", common.log_history_rows(trainer.state.log_history))
    return finish(config, model, tokenizer, eval_rows, scorer=scorer, params=params, training=training, watch=watch,
                  run_id=run_id, ckpt=ckpt)


def finish(config: PretrainConfig, model, tokenizer, eval_rows: list[dict], *, scorer, params: dict, training: dict,
           watch: common.Stopwatch, run_id: str, ckpt) -> dict:
    """Evaluate the base zero-shot, publish and record (common.finish_run). A base trained nothing for a user of it:
    its record says 0 trainable parameters, as the evaluator reads it back."""
    def evaluate() -> dict:
        return evaluation.evaluate(
            model, tokenizer, eval_rows, model_id=config.output, method="base", base_model=config.output,
            dataset=config.dataset, split=config.eval_split, settings=GenerationSettings(), scorer=scorer,
            params={**params, "trainable": 0, "trainable_share": 0.0}, training=training,
            started_at=watch.started_at, started_clock=watch.clock, run_id=run_id, write=False,
        )

    def card(metrics: dict) -> str:
        return store.model_card(config.output, base_model="(none: pretrained from scratch)", method="base",
                                dataset=config.dataset, metrics=metrics["metrics"], training=training, params=params,
                                description="Demo base model with FLAN-T5's architecture at small scale, pretrained "
                                            "on synthetic dialogues only. It writes dialogue; it has not learned to "
                                            "summarize.")

    metrics = common.finish_run(run_id=run_id, ckpt=ckpt, folder=ckpt / "final", output=config.output,
                                push_to_hub=None, evaluate=evaluate, card=card)
    print(evaluation.format_table([metrics]))
    print(f"[pretrain] published {config.output} revision {metrics['revision']} (run {run_id})")
    return metrics


if __name__ == "__main__":
    sys.exit(common.cli(main))
