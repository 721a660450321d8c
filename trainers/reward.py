"""Train a reward model from preference pairs with trl's RewardTrainer (the reference recipe's "future work":
learn the reward from human preferences instead of a proxy classifier), and publish it so PPO can use it:

    python -m trainers.reward --config configs/recipes/reward.yaml   # the demo reward model (demo pairs)
    python -m trainers.reward --pairs prefs.jsonl --output you/summary-reward
    python -m trainers.reward --preferences local/votes --output you/votes-reward   # Compare votes (or trainers.pairs)
    python -m trainers.ppo --reward reward-model:demo/toxicity-reward

A pairs file is jsonl with `chosen` and `rejected` summaries (a `prompt` field may be present and is ignored): like
the toxicity classifier it replaces, the reward model scores a summary on its own, which is also how PPO queries it.
`--preferences` takes a preference dataset instead (workbench.preferences: the votes saved in Compare, or the
automatic pairs of `python -m trainers.pairs`; a store name or a .jsonl in that format): the pairs of one vote are
not independent, so whole votes are held out, never split across training and measurement.
Held-out pairs measure how often it ranks `chosen` above `rejected`; the run is recorded like every other run
(results/<run_id>.json, method "reward": held-out pairwise accuracy with its 95% CI, and the pairs it learned from).
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import torch

from trainers import common, options
from trainers.options import ConfigError, arg
from workbench import modeling, paths, results, scoring, store
from workbench.io import atomic_write_jsonl, read_jsonl


@dataclasses.dataclass
@options.defaults(max_steps=300, seed=0, save_dtype="fp32")
class RewardRecipe(options.Weights, options.Checkpoints, options.Optimization, options.Publishing):
    pairs: str = arg("demo", "preference pairs: a jsonl file (chosen, rejected[, prompt]) or 'demo'")
    preferences: str | None = arg(None, "train on a preference dataset instead of --pairs: a workbench.preferences "
                                  "name in the local store (Compare votes, trainers.pairs) or a .jsonl in its format; "
                                  "whole votes are held out")
    tokenizer: str = arg("demo/flan-t5-demo-base", "tokenizer to use (store name or Hub id)")
    held_out: float = arg(0.2, "share of pairs held out to measure ranking accuracy", within="(0, 1)")
    # the model
    hidden_size: int = arg(128, "reward model width (a small BERT-style encoder built from a config)", positive=True)
    layers: int = arg(2, "encoder layers", positive=True)
    max_length: int = arg(128, "longest tokenized summary; trl drops (does not truncate) longer pairs", positive=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pairs != "demo" and not Path(self.pairs).is_file():
            raise ConfigError(f"pairs: file not found: {self.pairs}")
        if self.preferences is not None and not Path(self.preferences).is_file():
            from workbench import preferences

            if self.preferences not in preferences.list_datasets():
                known = ", ".join(preferences.list_datasets()) or "none yet: vote in Compare or run trainers.pairs"
                raise ConfigError(f"preferences: no preference dataset {self.preferences!r} (in the local store: "
                                  f"{known})")


# Options that do not change what is trained: a run may resume with other values.
NOT_TRAINING = frozenset({"output", "push_to_hub", "checkpoint_dir", "fresh", "save_dtype"})


def load_pairs(spec: str) -> list[dict]:
    if spec == "demo":
        from workbench import corpus

        return [{"chosen": p["chosen"], "rejected": p["rejected"]} for p in corpus.preference_pairs()]
    try:
        rows = read_jsonl(spec)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"pairs: {spec} is not a jsonl file of pairs ({str(err)[:120]})") from None
    for i, row in enumerate(rows):
        for key in ("chosen", "rejected"):
            if not isinstance(row, dict) or not isinstance(row.get(key), str) or not row[key].strip():
                raise ConfigError(f"pairs: {spec} row {i}: field {key!r} is missing or empty")
    if len(rows) < 10:
        raise ConfigError(f"pairs: {spec} has {len(rows)} pairs; at least 10 are needed")
    return [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


def load_preferences(spec: str) -> list[dict]:
    """Pairs (vote_id, chosen, rejected) from a preference dataset; the prompt is dropped (see the module doc)."""
    from trainers.preference import load_preference_pairs

    pairs, where = load_preference_pairs(spec)
    if len({p["vote_id"] for p in pairs}) < 2:
        raise ConfigError(f"preferences: {where} holds one vote; at least 2 are needed (one is held out)")
    return [{"vote_id": p["vote_id"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]


def split_pairs(pairs: list[dict], held_out: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out) pairs. Pairs with a vote_id (a preference dataset) are held out by whole votes, at least
    one vote and never all of them; plain pairs are shuffled and cut as before."""
    if pairs and "vote_id" in pairs[0]:
        votes = sorted({p["vote_id"] for p in pairs})
        held = set(random.Random(seed).sample(votes, min(len(votes) - 1, max(1, round(len(votes) * held_out)))))
        texts = [({"chosen": p["chosen"], "rejected": p["rejected"]}, p["vote_id"] in held) for p in pairs]
        return [t for t, out in texts if not out], [t for t, out in texts if out]
    pairs = list(pairs)
    random.Random(seed).shuffle(pairs)
    n_test = max(1, round(len(pairs) * held_out))
    return pairs[n_test:], pairs[:n_test]


def build_reward_model(vocab_size: int, config: RewardRecipe):
    from transformers import BertConfig, BertForSequenceClassification

    bert = BertConfig(vocab_size=vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.layers,
                      num_attention_heads=max(1, config.hidden_size // 64), intermediate_size=2 * config.hidden_size,
                      max_position_embeddings=512, num_labels=1, pad_token_id=0)
    return BertForSequenceClassification(bert)


def pair_outcomes(score, pairs: list[dict]) -> list[dict]:
    """Per held-out pair: both scores and whether `chosen` ranked above `rejected` (1/0)."""
    chosen = score([r["chosen"] for r in pairs])
    rejected = score([r["rejected"] for r in pairs])
    return [{**pair, "score_chosen": c, "score_rejected": r, "correct": int(c > r)}
            for pair, c, r in zip(pairs, chosen, rejected)]


def pairs_source(spec: str) -> str:
    """How a record names the pairs: 'demo', a preference dataset's store name, or the file inside the repository
    (its name alone if outside)."""
    return spec if spec == "demo" or not Path(spec).is_file() else options.recipe_name(spec)


def data_spec(config: RewardRecipe) -> str:
    """What the run trains on: --preferences when given, else --pairs."""
    return config.preferences or config.pairs


def run_record(config: RewardRecipe, run_id: str, outcomes: list[dict], train_pairs: list[dict], *, steps: int,
               params: dict, watch: common.Stopwatch) -> dict:
    """The schema-1 run record of a reward model: its headline is held-out pairwise accuracy (a CI over per-pair
    0/1 correctness) instead of ROUGE; the per-pair outcomes are its outputs file."""
    outputs_file = f"outputs/{run_id}.jsonl"
    atomic_write_jsonl(paths.RESULTS_DIR / outputs_file, outcomes)
    source = pairs_source(data_spec(config))
    run = {
        "schema_version": results.SCHEMA_VERSION, "run_id": run_id, "model_id": config.output, "revision": None,
        "method": "reward", "base_model": BASE_DESCRIPTION,
        "params": {"total": params["total"], "trainable": params["trainable"], "trainable_share": 1.0},
        "dataset": {"id": source, "split": "held_out", "n": len(outcomes)},
        "metrics": {"pairwise_accuracy": scoring.mean_ci([o["correct"] for o in outcomes]),
                    "train_pairs": {"n": len(train_pairs), "source": source}},
        "generation": {},
        "training": {"method": "reward", "pairs": source, "n_train": len(train_pairs), "n_held_out": len(outcomes),
                     "held_out_share": config.held_out, "steps": steps, "batch_size": config.batch_size,
                     "learning_rate": config.learning_rate, "hidden_size": config.hidden_size,
                     "layers": config.layers, "max_length": config.max_length, "seed": config.seed,
                     **options.recipe_record(config), "train_seconds": round(watch.seconds, 1),
                     "log_file": f"logs/{run_id}.jsonl"},
        "git_commit": results.git_commit(), "started_at": watch.started_at, "finished_at": results.utc_now(),
        "wall_time_s": round(watch.seconds, 2), "outputs_file": outputs_file,
    }
    return results.validate(run)


BASE_DESCRIPTION = "(none: BERT-style encoder built from a config)"


def main(argv: list[str] | None = None) -> dict:
    """setup (pairs, tokenizer, model, checkpoint folder) -> train -> save -> evaluate on held-out pairs, publish."""
    config = options.parse(RewardRecipe, argv, description=__doc__)
    watch = common.start(config, "reward", config.tokenizer, data_spec(config))
    pairs = load_preferences(config.preferences) if config.preferences else load_pairs(config.pairs)
    train_pairs, test_pairs = split_pairs(pairs, config.held_out, config.seed)
    tokenizer = modeling.load_tokenizer(common.resolve_model(config.tokenizer, field="tokenizer"))
    model = build_reward_model(len(tokenizer), config)
    ckpt, run_id = common.start_checkpoints(config, "reward", NOT_TRAINING,
                                            [f"{p['chosen']}\n{p['rejected']}" for p in train_pairs])
    trainer = train(config, model, tokenizer, train_pairs, ckpt, run_id)
    if not common.leave(trainer):
        return {}  # data-parallel workers are done; the main process evaluates and publishes once
    final = common.save_final(trainer.model, tokenizer, ckpt, config.save_dtype)
    atomic_write_jsonl(paths.RESULTS_DIR / "logs" / f"{run_id}.jsonl",
                       common.log_history_rows(trainer.state.log_history))
    params = modeling.count_parameters(trainer.model)
    run = common.finish_run(run_id=run_id, ckpt=ckpt, folder=final, output=config.output,
                            push_to_hub=config.push_to_hub, card=lambda run: card(config, run, params),
                            evaluate=lambda: evaluate(config, final, run_id, test_pairs, train_pairs,
                                                      steps=trainer.state.global_step, params=params, watch=watch))
    acc = run["metrics"]["pairwise_accuracy"]
    print(f"[reward] held-out ranking accuracy {acc['mean']:.3f} [{acc['ci_low']:.3f}, {acc['ci_high']:.3f}] on "
          f"{acc['n']} pairs (chance 0.5); published {config.output} revision {run['revision']} (run {run_id})")
    return run


def train(config: RewardRecipe, model, tokenizer, train_pairs: list[dict], ckpt: Path, run_id: str):
    """trl's RewardTrainer on the training pairs, through `common.fit` as the other recipes train: resumed from the
    newest complete checkpoint, with live progress for the Train tab and a clean stop on SIGTERM."""
    import datasets
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(
        output_dir=str(ckpt), max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, max_length=config.max_length, seed=config.seed, logging_steps=25,
        save_steps=100, save_total_limit=1, report_to=[], bf16=False, disable_dropout=True,
        use_cpu=not torch.cuda.is_available(),  # data-parallel on CPUs under torchrun too (gloo), as the others train
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(train_pairs),
                            processing_class=tokenizer)
    common.fit(trainer, ckpt, "reward", run_id)
    return trainer


def evaluate(config: RewardRecipe, final: Path, run_id: str, test_pairs: list[dict], train_pairs: list[dict], *,
             steps: int, params: dict, watch: common.Stopwatch) -> dict:
    """The published weights' ranking of the held-out pairs, as the run record."""
    from workbench.rewards import LearnedReward

    outcomes = pair_outcomes(LearnedReward(final, max_length=config.max_length), test_pairs)
    return run_record(config, run_id, outcomes, train_pairs, steps=steps, params=params, watch=watch)


def card(config: RewardRecipe, run: dict, params: dict) -> str:
    acc = run["metrics"]["pairwise_accuracy"]
    return store.model_card(config.output, base_model=BASE_DESCRIPTION, method="reward",
                            dataset=pairs_source(data_spec(config)), metrics=run["metrics"],
                            training=run["training"], params=params,
                            description=f"Reward model trained on preference pairs with trl's RewardTrainer. "
                                        f"Held-out ranking accuracy: {acc['mean']:.3f} [{acc['ci_low']:.3f}, "
                                        f"{acc['ci_high']:.3f}] on {acc['n']} pairs.")


if __name__ == "__main__":
    sys.exit(common.cli(main))
