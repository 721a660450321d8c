"""Build the demo family's base model: train a T5 tokenizer on the demo corpus, then pretrain a FLAN-T5-shaped model
from scratch on the dialogues only (never the summaries) with T5's span-corruption objective, mixed with prefix-LM
continuation as in T5's LM adaptation. The result writes fluent dialogue but has never seen a summary: an
un-adapted base for prompting, fine-tuning and LoRA.

    python -m trainers.pretrain                                       # -> local/t5-scratch-demo-pretrain
    python -m trainers.pretrain --config configs/recipes/pretrain.yaml  # the served demo/flan-t5-demo-base

On the demo dataset the training dialogues are joined by `--extra-dialogues` more from the same generator (dialogues
only, none equal to a validation or test dialogue); docs/TRAINERS.md says why.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from typing import Literal

import torch

from trainers import common, options
from trainers.options import arg
from workbench import data, dropout, evaluation, generation, modeling, store, toxicity
from workbench.generation import GenerationSettings


@dataclasses.dataclass
@options.defaults(max_steps=2000, warmup_ratio=0.04, seed=0, logging_steps=50, save_steps=500)
class PretrainRecipe(options.Weights, options.Checkpoints, options.TrainerOptions, options.Evaluation,
                     options.Publishing, options.EvalData):
    split: str = arg("train", "split whose dialogues are pretrained on (their summaries are never used)")
    extra_dialogues: int | None = arg(None, "extra synthetic dialogues to pretrain on, never equal to an evaluation "
                                      "dialogue (None = 20000 for the demo dataset, 0 otherwise)", within="[0, inf)")
    open_share: float = arg(0.0, "share of the extra dialogues that are open-vocabulary ones (workbench.opencorpus)",
                            within="[0, 1]")
    free_share: float = arg(0.0, "share of the open-vocabulary extra dialogues in free word order "
                            "(workbench.opencorpus.free_sentence)", within="[0, 1]")
    # the tokenizer and the objective
    vocab_size: int = arg(4000, "tokenizer vocabulary size, including the 100 sentinels", within="[300, inf)")
    max_length: int = arg(160, "tokens of dialogue per example (a random window of longer dialogues)", positive=True)
    noise_density: float = arg(0.15, "share of tokens masked by span corruption", within="(0, 1)")
    mean_span_length: float = arg(3.0, "mean length of a masked span", positive=True)
    prefix_lm_share: float = arg(0.5, "share of examples that are prefix-LM continuation instead of span corruption",
                                 within="[0, 1]")
    reconstruct_share: float = arg(0.0, "share of examples that rebuild the whole window from a masked copy (BART's "
                                   "text infilling): the objective that teaches copying from the input",
                                   within="[0, 1]")
    copy_prior: float = arg(0.0, "initial bias of encoder heads towards the tokens on their left, so that a copy "
                            "circuit can form (modeling.add_copy_prior; 0 = none)", within="[0, 100]")
    copy_context: int = arg(1, "tokens of left context the copy prior points heads at (2: the lookup matches the last "
                            "two tokens written, which real text's repeated words need)", within="[1, 4]")
    copy_warmup_steps: int = arg(0, "steps of pure copy before the dialogue objectives: they form the copy circuit "
                                 "that reconstruction on dialogues alone did not", within="[0, inf)")
    copy_warmup_source: Literal["random", "dialogues"] = arg(
        "random", "what the warm-up copies: short random token strings, or windows of the pretraining dialogues "
        "(whose repeated words teach the lookup to use context)")
    copy_finish_steps: int = arg(0, "steps of copying dialogue windows after the dialogue objectives, with "
                                 "copy_substitute of their tokens replaced by random ones: every token of the "
                                 "vocabulary learns to be copied, not only the generator's frequent ones",
                                 within="[0, inf)")
    copy_substitute: float = arg(0.3, "share of a copied window's tokens replaced by tokens drawn uniformly from the "
                                 "vocabulary, in the copy finish", within="[0, 1)")
    reconstruct_length: int = arg(96, "tokens of a window that a reconstruction example rebuilds", positive=True)
    copy_bias: float = arg(0.0, "copy bias that the base's adaptations train and decode with (config.copy_bias, "
                           "workbench.generation.copy_boost): set on the base, so that every LoRA adapter on it and "
                           "every fine-tune from it shares it; pretraining itself does not add it", within="[0, 20]")
    copy_span: int = arg(1, "how many of the last tokens written the base's copy pointer matches against the dialogue "
                         "(config.copy_span, workbench.generation.match_lengths), shared like the bias",
                         within="[1, 16]")
    min_new_tokens: int = arg(0, "shortest summary, in tokens, that the base writes, and every model made from it "
                              "that sets none of its own (generation_config.min_new_tokens, as Hub summarizers carry "
                              "a min_length; workbench.generation.model_min_new_tokens); 0 = none (the demo recipe: "
                              "its summarizers carry theirs)", within="[0, 1024]")

    def __post_init__(self):
        super().__post_init__()
        if self.prefix_lm_share + self.reconstruct_share > 1:
            raise options.ConfigError("prefix_lm_share + reconstruct_share: must be at most 1 (the rest is span corruption)")


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


def reconstruct(ids: list[int], sentinels: list[int], eos: int, rng: random.Random,
                noise_density: float = 0.15, mean_span_length: float = 3.0) -> tuple[list[int], list[int]]:
    """BART's text infilling: the input is the window with spans masked, the target the whole window. Most of the
    target is read off the input, so the model learns to copy what it reads, word by word, and to fill the gaps.

    ids:    a b c d e f g h        -> input:  a b <0> e f g <1>     target: a b c d e f g h </s>
    """
    masked, _ = span_corruption(ids, sentinels, eos, rng, noise_density, mean_span_length)
    return masked, ids + [eos]


class PretrainCollator:
    """Turns tokenised dialogues into a padded batch of (corrupted input, target) pairs, fresh noise every time."""

    def __init__(self, tokenizer, config: PretrainRecipe, seed: int):
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
            roll = self.rng.random()
            if roll < self.config.prefix_lm_share:
                pairs.append(prefix_lm(ids, self.tokenizer.eos_token_id, self.rng))
            elif roll < self.config.prefix_lm_share + self.config.reconstruct_share:
                pairs.append(reconstruct(ids[: self.config.reconstruct_length], self.sentinels,
                                         self.tokenizer.eos_token_id, self.rng, self.config.noise_density,
                                         self.config.mean_span_length))
            else:
                pairs.append(span_corruption(ids, self.sentinels, self.tokenizer.eos_token_id, self.rng,
                                             self.config.noise_density, self.config.mean_span_length))
        return {"input_ids": _pad([p[0] for p in pairs], 0), "attention_mask": _pad([[1] * len(p[0]) for p in pairs], 0),
                "labels": _pad([p[1] for p in pairs], -100)}


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


COPY_WINDOW = 48  # longest dialogue window a copy phase copies (the shortest is half of it)


def copy_warmup(model, vocab: int, steps: int, *, seed: int, batch_size: int = 32, max_length: int = 12,
                lr: float = 1e-3, low: int = 100, span: int = 300, windows: list[list[int]] | None = None,
                substitute: float = 0.0, phase: str = "copy warm-up", bf16: bool = False) -> float:
    """Train `model` to copy random strings of 4..`max_length` token ids drawn from `span` ids from `low` on (within
    `vocab`), or with `windows` (tokenized texts) random windows of `max_length`/2..`max_length` of their tokens, all
    windows of a batch equally long (nothing is padding; windows of mixed lengths padded a quarter of each batch at the
    demo recipe's 24-48); returns the token accuracy of the last 20 steps. Random tokens leave nothing to guess but the
    input, so the only way down is the copy circuit (with modeling.add_copy_prior: 79% token accuracy after 400 steps at
    demo scale, 19% without after 1,900). A few hundred ids, each seen often: over the whole 5,900-id vocabulary the
    circuit had not formed after 600 steps (13%). Dialogue windows carry it to real text: after 500 steps of copying
    24-48-token windows of the generated dialogues, a fresh model read 63% of real DialogSum windows back (context 1),
    68% with copy_context 2; after random strings, 8%. With `substitute`, that share of a window's tokens is replaced by
    ids drawn uniformly from `low`..`vocab`, so that rare tokens are copied too: a base copied a real token 3% of the
    time when it was rare in the generator's text (10-100 per million), 91% when frequent. `bf16`: the forward pass
    under bf16 autocast, as the Trainer runs the rest of pretraining (1.45x faster per step on an AVX512-BF16 CPU; the
    weights and the optimizer stay fp32)."""
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 50))
    model.train()
    accuracy = []
    windows = [w for w in windows or () if len(w) > max_length]

    def string(n: int) -> list[int]:
        if not windows:
            return [rng.randrange(low, min(vocab, low + span)) for _ in range(rng.randint(4, max_length))]
        text = rng.choice(windows)
        start = rng.randrange(len(text) - n)
        return [rng.randrange(low, vocab) if substitute and rng.random() < substitute else t
                for t in text[start: start + n]]

    with dropout.cpu_dropout(model):  # torch's CPU dropout masks are slow (workbench.dropout)
        for _ in tqdm(range(steps), desc=phase, unit="step"):
            n = rng.randint(max_length // 2, max_length) if windows else 0  # one window length per batch: no padding
            ids = _pad([string(n) + [1] for _ in range(batch_size)], 0).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=ids, attention_mask=(ids != 0).long(), labels=ids.masked_fill(ids == 0, -100))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step(), schedule.step(), optimizer.zero_grad()
            real = ids != 0
            accuracy = (accuracy + [float((out.logits.argmax(-1) == ids)[real].float().mean())])[-20:]
    return sum(accuracy) / max(1, len(accuracy))


# ------------------------------------------------------------------------------------------------ recipe


def pretraining_dialogues(config: PretrainRecipe, rows: list[dict]) -> list[str]:
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
                                            open_share=config.open_share, free_share=config.free_share)
    return dialogues


# Options that do not change what is trained (evaluation, output, logging): a run may resume with other values.
NOT_TRAINING = frozenset({"output", "push_to_hub", "checkpoint_dir", "fresh", "eval_split", "eval_limit", "toxicity",
                          "eval_batch_size", "max_new_tokens", "logging_steps", "save_steps", "save_dtype"})


def training_arguments(config: PretrainRecipe, ckpt, run_id: str = ""):
    """Seq2SeqTrainingArguments of pretraining: the shared ones (common.trainer_arguments) with a cosine schedule;
    the collator builds each batch from raw token ids, so no column is removed."""
    return common.trainer_arguments(config, ckpt, run_id, lr_scheduler_type="cosine", weight_decay=0.01,
                                    remove_unused_columns=False)


def main(argv: list[str] | None = None) -> dict:
    """setup (data, checkpoint folder, tokenizer, model) -> pretrain -> save and record -> evaluate and publish."""
    config = options.parse(PretrainRecipe, argv, description=__doc__)
    from transformers import Seq2SeqTrainer  # after parsing: --help and a bad flag answer without it

    watch = common.start(config, "pretrain", "t5-scratch", config.dataset)
    rows = common.load_rows(config.dataset, config.split, fields="dataset / split")
    eval_rows = common.load_rows(config.dataset, config.eval_split, limit=config.eval_limit,
                                 fields="dataset / eval_split")
    scorer = toxicity.load_scorer(config.toxicity)
    ckpt, run_id = common.start_checkpoints(config, "pretrain", NOT_TRAINING, [r["dialogue"] for r in rows],
                                            run_method="base")  # its tokenizer and checkpoints come from these
    texts = pretraining_dialogues(config, rows)
    tokenizer = pretraining_tokenizer(texts, ckpt, config.vocab_size)
    print(f"[pretrain] tokenizer: {len(tokenizer)} tokens; {len(texts)} dialogues "
          f"({len(rows)} from {config.dataset}/{config.split}, {len(texts) - len(rows)} extra)")
    model = modeling.build_model(modeling.demo_config(len(tokenizer)), seed=config.seed)
    if config.copy_prior:
        modeling.add_copy_prior(model, config.copy_prior, context=config.copy_context)
    model = model.to(common.device())
    dataset = tokenized_dialogues(tokenizer, texts)
    if config.copy_warmup_steps and not common.last_checkpoint(ckpt):  # a resumed run's checkpoint has it already
        dialogue_windows = dataset["input_ids"] if config.copy_warmup_source == "dialogues" else None
        accuracy = copy_warmup(model, len(tokenizer) - modeling.SENTINELS, config.copy_warmup_steps, seed=config.seed,
                               windows=dialogue_windows, max_length=COPY_WINDOW if dialogue_windows else 12,
                               bf16=common.use_bf16(config.precision))
        print(f"[pretrain] copy warm-up: {config.copy_warmup_steps} steps, token accuracy {accuracy:.2f}")
    params = modeling.count_parameters(model)
    print(f"[pretrain] model: {params['total']:,} parameters, architecture {modeling.DEMO_ARCHITECTURE}")
    trainer = Seq2SeqTrainer(model=model, args=training_arguments(config, ckpt, run_id),
                             train_dataset=dataset,
                             data_collator=PretrainCollator(tokenizer, config, config.seed))
    last = common.fit(trainer, ckpt, "pretrain", run_id)
    if not common.leave(trainer):
        return {}  # data-parallel workers are done; the main process finishes, evaluates and publishes once
    finish_accuracy = None
    if config.copy_finish_steps:  # after the checkpoints: a resumed run repeats it from the same start and seed
        finish_accuracy = copy_warmup(trainer.model, len(tokenizer) - modeling.SENTINELS, config.copy_finish_steps,
                                      seed=config.seed + 1, windows=dataset["input_ids"], max_length=COPY_WINDOW,
                                      substitute=config.copy_substitute, lr=config.learning_rate,
                                      phase="copy finish", bf16=common.use_bf16(config.precision))
        print(f"[pretrain] copy finish: {config.copy_finish_steps} steps, {config.copy_substitute:.0%} of tokens "
              f"substituted, token accuracy {finish_accuracy:.2f}")
    if config.copy_bias:
        generation.set_copy_bias(trainer.model, config.copy_bias, tokenizer, config.copy_span)
    trainer.model.generation_config.min_new_tokens = config.min_new_tokens or None
    final = common.save_final(trainer.model, tokenizer, ckpt, config.save_dtype)
    training = common.training_record(
        config, trainer, "pretrain", watch=watch, run_id=run_id, resumed_from=last,
        objective="span corruption + prefix LM on dialogues only", dataset=config.dataset, split=config.split,
        n=len(rows), extra_dialogues=len(texts) - len(rows), vocab_size=len(tokenizer),
        architecture=modeling.DEMO_ARCHITECTURE,
        copy={"prior": config.copy_prior, "context": config.copy_context, "warmup_steps": config.copy_warmup_steps,
              "warmup_source": config.copy_warmup_source, "finish_steps": config.copy_finish_steps,
              "substitute": config.copy_substitute if config.copy_finish_steps else 0.0, "bias": config.copy_bias,
              "span": config.copy_span,
              "finish_accuracy": finish_accuracy}, min_new_tokens=config.min_new_tokens)
    return finish(config, trainer.model.eval(), tokenizer, eval_rows, final, scorer=scorer, params=params,
                  training=training, watch=watch, run_id=run_id, ckpt=ckpt)


def pretraining_tokenizer(texts: list[str], ckpt, vocab_size: int):
    """The run's tokenizer: trained once per run and kept beside its checkpoints, so that a resumed run reads the
    same pieces. It learns its pieces from exactly the text the model is pretrained on: a piece learned from other
    text (summaries, prompt templates) would keep a random embedding that a LoRA adapter can never fix (measured on
    an earlier build: 5% of summary tokens were such pieces, and a q/v LoRA plateaued below the base)."""
    folder = ckpt / "tokenizer"
    if (folder / "tokenizer.json").exists():
        return modeling.load_tokenizer(folder)
    tokenizer = modeling.train_tokenizer(texts, vocab_size=vocab_size)
    tokenizer.save_pretrained(folder)
    return tokenizer


def tokenized_dialogues(tokenizer, texts: list[str]):
    """A datasets.Dataset of token ids, one row per dialogue (the collator cuts windows and makes the targets)."""
    import datasets

    return datasets.Dataset.from_dict({"input_ids": tokenizer(texts, truncation=True, max_length=512)["input_ids"]})


def finish(config: PretrainRecipe, model, tokenizer, eval_rows: list[dict], final, *, scorer, params: dict,
           training: dict, watch: common.Stopwatch, run_id: str, ckpt) -> dict:
    """Evaluate the base zero-shot, publish and record (common.finish_run). A base trained nothing for a user of it:
    its record says 0 trainable parameters, as the evaluator reads it back."""
    def evaluate() -> dict:
        run = watch.run_info(model_id=config.output, method="base", base_model=config.output, dataset=config.dataset,
                             split=config.eval_split, params={**params, "trainable": 0, "trainable_share": 0.0},
                             training=training, run_id=run_id)
        return evaluation.evaluate(model, tokenizer, eval_rows, run, scorer=scorer, write=False,
                                   settings=GenerationSettings(max_new_tokens=config.max_new_tokens),
                                   batch_size=config.eval_batch_size)

    def card(metrics: dict) -> str:
        return store.model_card(config.output, base_model="(none: pretrained from scratch)", method="base",
                                dataset=config.dataset, metrics=metrics["metrics"], training=training, params=params,
                                description="Demo base model with FLAN-T5's architecture at small scale, pretrained "
                                            "on synthetic dialogues only. It writes dialogue; it has not learned to "
                                            "summarize.")

    metrics = common.finish_run(run_id=run_id, ckpt=ckpt, folder=final, output=config.output,
                                push_to_hub=config.push_to_hub, evaluate=evaluate, card=card)
    print(evaluation.format_table([metrics]))
    print(f"[pretrain] published {config.output} revision {metrics['revision']} (run {run_id})")
    return metrics


if __name__ == "__main__":
    sys.exit(common.cli(main))
