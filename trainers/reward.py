"""Train a reward model from preference pairs with trl's RewardTrainer (the reference recipe's "future work":
learn the reward from human preferences instead of a proxy classifier), and publish it so PPO can use it:

    python -m trainers.reward                                   # demo pairs: civil vs rude summaries of one dialogue
    python -m trainers.reward --pairs prefs.jsonl --output you/summary-reward
    python -m trainers.ppo --reward reward-model:demo/toxicity-reward

A pairs file is jsonl with `chosen` and `rejected` summaries (a `prompt` field may be present and is ignored): like
the toxicity classifier it replaces, the reward model scores a summary on its own, which is also how PPO queries it.
Held-out pairs measure how often it ranks `chosen` above `rejected`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path

from trainers import common
from trainers import config as cfg
from trainers.config import ConfigError, check_repo_id, field
from workbench import modeling, paths, results, store
from workbench.io import atomic_write_jsonl, read_jsonl


@dataclasses.dataclass
class RewardConfig:
    pairs: str = field("demo", "preference pairs: a jsonl file (chosen, rejected[, prompt]) or 'demo'")
    tokenizer: str = field("demo/flan-t5-demo-base", "tokenizer to use (store name or Hub id)")
    output: str = field("demo/toxicity-reward", "store name of the reward model")
    push_to_hub: str | None = field(None, "also push to this Hub repo")
    held_out: float = field(0.2, "share of pairs held out to measure ranking accuracy")
    hidden_size: int = field(128, "reward model width (a small BERT-style encoder built from a config)")
    layers: int = field(2, "encoder layers")
    max_steps: int = field(300, "optimizer steps")
    batch_size: int = field(16, "pairs per batch")
    learning_rate: float = field(5e-4, "learning rate")
    max_length: int = field(128, "longest tokenized summary; trl drops (does not truncate) longer pairs")
    seed: int = field(0, "random seed")
    checkpoint_dir: str | None = field(None, "checkpoint folder (default: runs/reward/<output>)")
    fresh: bool = field(False, "ignore existing checkpoints")

    def validate(self) -> None:
        if not 0 < self.held_out < 1:
            raise ConfigError(f"held_out: must be in (0, 1), got {self.held_out}")
        for name in ("hidden_size", "layers", "max_steps", "batch_size", "max_length"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        if self.pairs != "demo" and not Path(self.pairs).is_file():
            raise ConfigError(f"pairs: file not found: {self.pairs}")
        check_repo_id("output", self.output)
        if self.push_to_hub is not None:
            check_repo_id("push_to_hub", self.push_to_hub)


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


def build_reward_model(vocab_size: int, config: RewardConfig):
    from transformers import BertConfig, BertForSequenceClassification

    bert = BertConfig(vocab_size=vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.layers,
                      num_attention_heads=max(1, config.hidden_size // 64), intermediate_size=2 * config.hidden_size,
                      max_position_embeddings=512, num_labels=1, pad_token_id=0)
    return BertForSequenceClassification(bert)


def ranking_accuracy(score, pairs: list[dict]) -> float:
    chosen = score([r["chosen"] for r in pairs])
    rejected = score([r["rejected"] for r in pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def main(argv: list[str] | None = None) -> dict:
    import datasets
    from trl import RewardConfig as TrlRewardConfig, RewardTrainer

    from workbench.rewards import LearnedReward

    config = cfg.parse(RewardConfig, argv, description=__doc__)
    watch = common.Stopwatch()
    common.seed_everything(config.seed)
    modeling.quiet_transformers()
    pairs = load_pairs(config.pairs)
    random.Random(config.seed).shuffle(pairs)
    n_test = max(1, round(len(pairs) * config.held_out))
    train_pairs, test_pairs = pairs[n_test:], pairs[:n_test]
    tokenizer = modeling.load_tokenizer(common.resolve_model(config.tokenizer, field="tokenizer"))
    model = build_reward_model(len(tokenizer), config)
    ckpt = common.checkpoint_dir(config, "reward")
    common.prepare_checkpoint_dir(ckpt, config.fresh)
    common.last_checkpoint(ckpt, remove_incomplete=True)  # a run killed while saving leaves half a checkpoint
    run_id = common.run_id_for(ckpt, "reward")
    args = TrlRewardConfig(
        output_dir=str(ckpt), max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, max_length=config.max_length, seed=config.seed, logging_steps=25,
        save_steps=100, save_total_limit=1, report_to=[], bf16=False, disable_dropout=True,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(train_pairs),
                            processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=common.last_checkpoint(ckpt))
    final = ckpt / "final"
    trainer.model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    reward = LearnedReward(final, max_length=config.max_length)
    accuracy = ranking_accuracy(reward, test_pairs)
    atomic_write_jsonl(paths.RESULTS_DIR / "logs" / f"{run_id}.jsonl",
                       common.log_history_rows(trainer.state.log_history))
    record = {"run_id": run_id, "method": "reward", "pairs": config.pairs, "n_train": len(train_pairs),
              "n_held_out": len(test_pairs), "held_out_accuracy": accuracy, "steps": trainer.state.global_step,
              "train_seconds": round(watch.seconds, 1), "git_commit": results.git_commit(),
              "finished_at": results.utc_now(), "log_file": f"logs/{run_id}.jsonl"}
    card = store.model_card(config.output, base_model="(none: BERT-style encoder built from a config)",
                            method="reward", dataset=config.pairs, metrics=None, training=record, params=
                            modeling.count_parameters(trainer.model),
                            description=f"Reward model trained on preference pairs with trl's RewardTrainer. "
                                        f"Held-out ranking accuracy: {accuracy:.3f} on {len(test_pairs)} pairs.")
    from workbench.io import atomic_write_json, atomic_write_text

    path = paths.RESULTS_DIR / "reward" / f"{run_id}.json"
    if path.exists():  # killed after recording itself: published already, the record stays as written
        record = json.loads(path.read_text())
    else:
        record["revision"] = store.publish_local(final, config.output, card=card, metrics=None)
        atomic_write_json(path, record)
    if config.push_to_hub:
        common.push(final, config.push_to_hub, done=f"{config.output} revision {record['revision']} in the local store")
    atomic_write_text(ckpt / "COMPLETED", run_id + "\n")
    print(f"[reward] held-out ranking accuracy {accuracy:.3f} on {len(test_pairs)} pairs "
          f"(chance 0.5); published {config.output} revision {record['revision']}")
    return record


if __name__ == "__main__":
    sys.exit(common.cli(main))
