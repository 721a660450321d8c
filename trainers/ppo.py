"""PPO detoxification of the LoRA summarizer (the reference recipe's phase 3), for encoder-decoder models.

Policy: a trainable "ppo" adapter initialised from the LoRA weights, plus a value head on the decoder's hidden
states. Reference: the same LoRA weights as a frozen "ref" adapter on the SAME base copy. Each step samples
summaries of training dialogues, scores them with the reward (offline: the profanity classifier's log-odds of
being clean), subtracts a per-token KL penalty against the reference (adaptive coefficient), and runs clipped PPO
epochs over minibatches (workbench/ppo.py holds the maths). Every step is logged to results/logs/<run>.jsonl.
At the end the PPO adapter and its LoRA start are both evaluated greedily on the whole test split: toxicity with
the paired difference and its 95% CI, and ROUGE. The adapter is published to the store.

    python -m trainers.ppo                                   # demo family, offline
    python -m trainers.ppo --policy you/flan-t5-base-dialogsum-lora --dataset knkarthick/dialogsum \
        --reward hf:facebook/roberta-hate-speech-dynabench-r4-target:logit --output you/flan-t5-base-dialogsum-ppo
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import sys
from pathlib import Path

import torch

from trainers import common
from trainers import config as cfg
from trainers.config import ConfigError, check_repo_id, check_scorer, field
from workbench import evaluation, modeling, paths, ppo, prompts, rewards, scoring, store, toxicity
from workbench.generation import GenerationSettings, generate
from workbench.io import atomic_write_json


@dataclasses.dataclass
class PPOTrainConfig:
    policy: str = field("demo/flan-t5-demo-lora", "the LoRA adapter to detoxify (store name or Hub id)")
    base: str | None = field(None, "its base model (default: read from the adapter config)")
    dataset: str = field("demo", "dialogues for rollouts: demo, dialogsum-local, a folder/file or a Hub id")
    train_split: str = field("train", "split for rollouts")
    eval_split: str = field("test", "split for the final evaluation (whole split unless --eval-limit)")
    train_limit: int | None = field(None, "use only the first N training dialogues")
    eval_limit: int | None = field(None, "evaluate only the first N rows")
    output: str = field("demo/flan-t5-demo-ppo", "store name of the PPO adapter")
    push_to_hub: str | None = field(None, "also push to this Hub repo (token from the environment; never printed)")
    reward: str = field("profanity-check:one_minus_p", "reward: profanity-check[:one_minus_p|logodds], "
                        "hf:<model>[:logit|logodds|one_minus_p], or reward-model:<store name>. Offline default "
                        "1 - p(toxic): it saturates on clean text, so only toxic summaries are pushed; log-odds keeps "
                        "rewarding ever cleaner text, which the demo policy found by writing shorter summaries "
                        "(ROUGE-1 -0.14 vs -0.002 here)")
    toxicity: str = field("profanity-check", "scorer for the before/after toxicity evaluation")
    steps: int = field(60, "PPO steps (one rollout batch each)")
    batch_size: int = field(32, "rollouts per step")
    mini_batch_size: int = field(8, "minibatch size for the PPO epochs")
    ppo_epochs: int = field(4, "optimisation epochs over each rollout batch")
    learning_rate: float = field(1e-4, "Adam learning rate for the adapter and value head")
    init_kl_coef: float = field(0.1, "initial KL penalty coefficient")
    target_kl: float = field(4.0, "target KL (sum over a summary's tokens) for the adaptive controller")
    adaptive_kl: bool = field(True, "adapt the KL coefficient towards --target-kl")
    horizon: int = field(2000, "adaptive KL controller horizon")
    cliprange: float = field(0.2, "policy ratio clip")
    cliprange_value: float = field(0.2, "value clip")
    vf_coef: float = field(0.1, "value loss weight")
    gamma: float = field(1.0, "discount")
    lam: float = field(0.95, "GAE lambda")
    max_grad_norm: float = field(1.0, "gradient clipping")
    max_source_length: int = field(512, "truncate prompts to this many tokens")
    min_new_tokens: int = field(5, "rollout minimum length (as the reference recipe)")
    max_new_tokens: int = field(48, "rollout maximum length")
    top_k: int = field(0, "rollout sampling top-k (0 = off, as the reference recipe)")
    top_p: float = field(1.0, "rollout nucleus sampling p")
    heated_share: float = field(0.5, "oversample rows whose reference summary is toxic to this share of each "
                                "batch (0 = plain random batches)")
    seed: int = field(0, "random seed")
    save_steps: int = field(10, "checkpoint every N steps (a restarted command resumes)")
    checkpoint_dir: str | None = field(None, "checkpoint folder (default: runs/ppo/<output>)")
    fresh: bool = field(False, "ignore existing checkpoints")
    eval_batch_size: int = field(32, "generation batch size for evaluation")

    def validate(self) -> None:
        for name in ("steps", "batch_size", "mini_batch_size", "ppo_epochs", "max_new_tokens", "save_steps",
                     "eval_batch_size", "horizon"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(f"mini_batch_size: must divide batch_size ({self.batch_size})")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError("min_new_tokens: must be between 0 and max_new_tokens")
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ConfigError("top_p: must be in (0, 1]; top_k: must be >= 0")
        if not 0 <= self.heated_share < 1:
            raise ConfigError("heated_share: must be in [0, 1)")
        if self.init_kl_coef < 0 or self.target_kl <= 0:
            raise ConfigError("init_kl_coef: must be >= 0; target_kl: must be positive")
        check_reward("reward", self.reward)
        check_scorer("toxicity", self.toxicity)
        check_repo_id("output", self.output)
        if self.push_to_hub is not None:
            check_repo_id("push_to_hub", self.push_to_hub)

    def ppo_config(self) -> ppo.PPOConfig:
        return ppo.PPOConfig(
            learning_rate=self.learning_rate, batch_size=self.batch_size, mini_batch_size=self.mini_batch_size,
            ppo_epochs=self.ppo_epochs, gamma=self.gamma, lam=self.lam, cliprange=self.cliprange,
            cliprange_value=self.cliprange_value, vf_coef=self.vf_coef, init_kl_coef=self.init_kl_coef,
            target_kl=self.target_kl, horizon=self.horizon, adaptive_kl=self.adaptive_kl,
            max_grad_norm=self.max_grad_norm)


def check_reward(name: str, spec: str) -> None:
    """A reward spec (see --reward)."""
    kind, _, rest = spec.partition(":")
    if kind == "reward-model":
        if not rest.startswith((".", "/", "~")):  # a store name; a local folder is checked when it loads
            check_repo_id(name, rest)
        return
    if kind == "hf" and rest:
        return
    if kind == "profanity-check" and rest in ("", "logodds", "one_minus_p"):
        return
    raise ConfigError(f"{name}: expected profanity-check[:logodds|one_minus_p], hf:<model>[:logit|logodds|"
                      f"one_minus_p] or reward-model:<store name>, got {spec!r}")


# ------------------------------------------------------------------------------------------------ setup


def load_policy(config: PPOTrainConfig):
    """(peft model with 'ref' frozen and 'ppo' trainable adapters on one base, tokenizer, base ref, lora folder)."""
    from peft import PeftModel

    lora_folder = common.resolve_model(config.policy, field="policy")
    if not (lora_folder / "adapter_config.json").is_file():
        raise ConfigError(f"policy: {config.policy} is not a LoRA adapter (no adapter_config.json)")
    base_ref = config.base or json.loads((lora_folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    base_folder = common.resolve_model(base_ref, field="base")
    base = modeling.load_model(base_folder, dtype="fp32")
    model = PeftModel.from_pretrained(base, str(lora_folder), adapter_name="ref", is_trainable=False,
                                      use_safetensors=True)
    model.load_adapter(str(lora_folder), adapter_name="ppo", is_trainable=True, use_safetensors=True)
    model.set_adapter("ppo")  # the only adapter that trains; the reference is reached by adapter_names
    model.eval()  # no dropout: old and new log-probs must agree before the first update
    return model, modeling.load_tokenizer(base_folder), base_ref, lora_folder


def save_checkpoint(folder: Path, step: int, model, value_head, optimizer, kl_ctl, rng: random.Random) -> None:
    """Write a checkpoint to a temporary folder, then swap it in: the previous checkpoint is moved aside (not deleted)
    until the new one is in place, so a kill at any moment leaves one complete checkpoint (see latest_checkpoint)."""
    tmp, old = folder.parent / f".tmp-{folder.name}", folder.parent / f".old-{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "adapter", selected_adapters=["ppo"], safe_serialization=True)
    torch.save({"step": step, "value_head": value_head.state_dict(), "optimizer": optimizer.state_dict(),
                "kl_ctl": kl_ctl.state_dict(), "rng": rng.getstate(), "torch_rng": torch.get_rng_state()},
               tmp / "trainer_state.pt")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(ckpt: Path) -> Path | None:
    """The checkpoint to resume from: `latest`, or the previous one if a kill interrupted the swap in between."""
    for name in ("latest", ".old-latest"):
        if (ckpt / name / "trainer_state.pt").is_file():
            return ckpt / name
    return None


def adapter_files(folder: Path) -> Path:
    """peft saves non-default adapters in a subfolder named after the adapter."""
    return folder / "ppo" if (folder / "ppo" / "adapter_config.json").exists() else folder


def load_checkpoint(folder: Path, model, value_head, optimizer, kl_ctl, rng: random.Random) -> int:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(adapter_files(folder / "adapter") / "adapter_model.safetensors")
    set_peft_model_state_dict(model, weights, adapter_name="ppo")
    # trainer_state.pt is our own file (optimizer moments, RNG states), written by save_checkpoint above.
    state = torch.load(folder / "trainer_state.pt", weights_only=True)  # tensors and plain values only
    value_head.load_state_dict(state["value_head"])
    optimizer.load_state_dict(state["optimizer"])
    kl_ctl.load_state_dict(state["kl_ctl"])
    rng.setstate(state["rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"]


def batch_indices(rows: list[dict], rng: random.Random, batch_size: int, heated_share: float,
                  is_toxic: list[bool]) -> list[int]:
    pool = list(range(len(rows)))
    toxic = [i for i in pool if is_toxic[i]]
    n_toxic = round(batch_size * heated_share) if toxic else 0
    return rng.sample(toxic, min(n_toxic, len(toxic))) + rng.sample(pool, batch_size - min(n_toxic, len(toxic)))


# ------------------------------------------------------------------------------------------------ loop


def rollout(model, value_head, tokenizer, prompts_: list[str], config: PPOTrainConfig, reward_fn, kl_ctl):
    """Sample summaries, score them, and compute everything PPO needs (no gradients)."""
    enc = tokenizer(prompts_, return_tensors="pt", padding=True, truncation=True, max_length=config.max_source_length)
    n = len(prompts_)
    with torch.no_grad():
        sequences = model.generate(**enc, do_sample=True, top_k=config.top_k, top_p=config.top_p,
                                   min_new_tokens=config.min_new_tokens, max_new_tokens=config.max_new_tokens,
                                   adapter_names=["ppo"] * n)
        response_ids, response_mask = ppo.split_generated(sequences, tokenizer.pad_token_id, tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        scores = torch.tensor(reward_fn(texts), dtype=torch.float32)
        logprobs, _, hidden = ppo.seq2seq_logprobs(model, enc.input_ids, enc.attention_mask, response_ids,
                                                   response_mask, return_hidden=True, adapter_names=["ppo"] * n)
        values = value_head(hidden) * response_mask
        ref_logprobs, _ = ppo.seq2seq_logprobs(model, enc.input_ids, enc.attention_mask, response_ids,
                                               response_mask, adapter_names=["ref"] * n)
        prepared = ppo.prepare_advantages(scores, logprobs, ref_logprobs, values, response_mask, kl_ctl.value,
                                          gamma=config.gamma, lam=config.lam)
    batch = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "response_ids": response_ids,
             "response_mask": response_mask, "old_logprobs": logprobs, "old_values": values,
             "advantages": prepared["advantages"], "returns": prepared["returns"]}
    return batch, texts, scores, prepared


def main(argv: list[str] | None = None) -> dict:
    from tqdm.auto import tqdm

    config = cfg.parse(PPOTrainConfig, argv, description=__doc__)
    watch = common.Stopwatch()
    rank, world = common.init_distributed()  # data-parallel: each process rolls out its own batch
    main_process = rank == 0
    common.seed_everything(config.seed + rank)
    modeling.quiet_transformers()
    rows = common.load_rows(config.dataset, config.train_split, limit=config.train_limit,
                            fields="dataset / train_split")
    eval_rows = common.load_rows(config.dataset, config.eval_split, limit=config.eval_limit,
                                 fields="dataset / eval_split")
    reward_fn, reward_name = rewards.load_reward(config.reward)
    scorer = toxicity.load_scorer(config.toxicity)
    model, tokenizer, base_ref, lora_folder = load_policy(config)
    value_head = ppo.ValueHead(model.config.d_model)
    params = [p for p in model.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    pconf = config.ppo_config()
    kl_ctl = (ppo.AdaptiveKLController(config.init_kl_coef, config.target_kl, config.horizon) if config.adaptive_kl
              else ppo.FixedKLController(config.init_kl_coef))
    rng = random.Random(config.seed + rank)
    is_toxic = [s > 0.5 for s in scorer.score([r["summary"] for r in rows])]

    ckpt = common.checkpoint_dir(config, "ppo")
    if main_process:
        common.prepare_checkpoint_dir(ckpt, config.fresh)
    run_id = common.run_id_for(ckpt, "ppo")  # waits for the main process
    log_path = paths.RESULTS_DIR / "logs" / f"{run_id}.jsonl"
    start_step = 0
    resume = latest_checkpoint(ckpt)
    if resume is not None:
        start_step = load_checkpoint(resume, model, value_head, optimizer, kl_ctl, rng)
        if main_process:
            print(f"[ppo] resuming after step {start_step} from {resume} (run {run_id})")
        # each process continues with its own streams, the same on every restart from this checkpoint
        rng = random.Random(config.seed + rank + 7919 * start_step)
        torch.manual_seed(config.seed + rank + 7919 * start_step)
    log_rows = [json.loads(x) for x in log_path.read_text().splitlines()] if log_path.exists() else []
    log_rows = [r for r in log_rows if r["step"] <= start_step]  # steps after the checkpoint are redone

    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if main_process:
        print(f"[ppo] policy {config.policy} on {base_ref}; reward: {reward_name}; {n_trainable:,} trainable "
              f"adapter parameters + value head; {len(rows)} rollout dialogues; {world} process(es) x "
              f"{config.batch_size} rollouts per step")
    gen = torch.Generator().manual_seed(config.seed + rank)
    grad_sync = common.average_gradients if world > 1 else None
    bar = tqdm(range(start_step, config.steps), desc="ppo", unit="step", initial=start_step, total=config.steps,
               disable=not main_process)
    for step in bar:
        picked = batch_indices(rows, rng, config.batch_size, config.heated_share, is_toxic)
        batch, texts, scores, prepared = rollout(model, value_head, tokenizer,
                                                 [prompts.zero_shot(rows[i]["dialogue"]) for i in picked],
                                                 config, reward_fn, kl_ctl)
        stats = ppo.ppo_update(model, value_head, optimizer, batch, pconf, params_to_clip=params, generator=gen,
                               grad_sync=grad_sync)
        lengths = batch["response_mask"].sum(1).float()
        stats = common.mean_across({"reward_mean": scores.mean().item(), "reward_std": scores.std().item(),
                                    "toxicity_mean": float(sum(scorer.score(texts)) / len(texts)),
                                    "kl": prepared["stats"]["kl"], "response_length": lengths.mean().item(),
                                    **stats})
        kl_ctl.update(stats["kl"], config.batch_size * world)  # same coefficient in every process
        row = {"step": step + 1, "kl_coef": kl_ctl.value, **stats}
        log_rows.append(row)
        bar.set_postfix(reward=f"{row['reward_mean']:.2f}", kl=f"{row['kl']:.2f}", tox=f"{row['toxicity_mean']:.2f}")
        if main_process and ((step + 1) % config.save_steps == 0 or step + 1 == config.steps):
            # the log first: rows past the checkpoint a kill falls back to are dropped and redone on resume
            evaluation.atomic_write_jsonl(log_path, log_rows)
            save_checkpoint(ckpt / "latest", step + 1, model, value_head, optimizer, kl_ctl, rng)
    common.end_distributed()  # training is over: no more collectives
    if not main_process:
        return {}  # the main process evaluates and publishes once

    # ---- evaluation: the PPO adapter and its LoRA start, greedy, on the whole split, paired by example
    final = ckpt / "final"
    shutil.rmtree(final, ignore_errors=True)
    model.save_pretrained(final, selected_adapters=["ppo"], safe_serialization=True)
    final = adapter_files(final)
    adapter_config = json.loads((final / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = base_ref
    atomic_write_json(final / "adapter_config.json", adapter_config)
    tokenizer.save_pretrained(final)
    settings = GenerationSettings(max_new_tokens=64)
    n_params = modeling.count_parameters(model)
    params_record = {"total": n_params["total"], "trainable": n_trainable,
                     "trainable_share": n_trainable / n_params["total"]}

    def evaluate() -> dict:
        dialogue_prompts = [prompts.zero_shot(r["dialogue"]) for r in eval_rows]
        start_outputs = generate(model, tokenizer, dialogue_prompts, settings,
                                 adapter_names=["ref"] * len(eval_rows), batch_size=config.eval_batch_size,
                                 progress=True)
        start_tox = scorer.score(start_outputs)
        start_rouge = scoring.rouge_per_example(start_outputs, [r["references"] for r in eval_rows])
        ppo_outputs = generate(model, tokenizer, dialogue_prompts, settings, adapter_names=["ppo"] * len(eval_rows),
                               batch_size=config.eval_batch_size, progress=True)
        ppo_tox = scorer.score(ppo_outputs)
        ppo_rouge = scoring.rouge_per_example(ppo_outputs, [r["references"] for r in eval_rows])
        extra = {
            "toxicity_start": scoring.mean_ci(start_tox),
            "toxicity_diff_vs_start": scoring.paired_diff_ci(ppo_tox, start_tox),
            "rouge1_start": scoring.mean_ci([r["rouge1"] for r in start_rouge]),
            "rouge1_diff_vs_start": scoring.paired_diff_ci([r["rouge1"] for r in ppo_rouge],
                                                           [r["rouge1"] for r in start_rouge]),
        }
        training = {"method": "ppo", "policy_start": config.policy, "reward": reward_name, "steps": config.steps,
                    "processes": world,
                    "batch_size": config.batch_size, "mini_batch_size": config.mini_batch_size,
                    "ppo_epochs": config.ppo_epochs, "learning_rate": config.learning_rate,
                    "init_kl_coef": config.init_kl_coef, "target_kl": config.target_kl,
                    "final_kl_coef": kl_ctl.value,
                    "sampling": {"top_k": config.top_k, "top_p": config.top_p,
                                 "min_new_tokens": config.min_new_tokens, "max_new_tokens": config.max_new_tokens},
                    "dataset": config.dataset, "split": config.train_split, "n": len(rows), "seed": config.seed,
                    "train_seconds": round(watch.seconds, 1), "log_file": f"logs/{run_id}.jsonl",
                    "resumed_from_step": start_step or None,
                    "examples": [{"fname": r["fname"], "before": b, "after": a}
                                 for r, b, a, tb in zip(eval_rows, start_outputs, ppo_outputs, start_tox)
                                 if tb > 0.5][:5]}
        return evaluation.evaluate(
            model, tokenizer, eval_rows, model_id=config.output, method="ppo", base_model=base_ref,
            dataset=config.dataset, split=config.eval_split, settings=settings, scorer=scorer,
            params=params_record, training=training, batch_size=config.eval_batch_size,
            started_at=watch.started_at, started_clock=watch.clock, run_id=run_id, extra_metrics=extra,
            predictions=ppo_outputs, write=False,
        )

    def card(metrics: dict) -> str:
        return store.model_card(config.output, base_model=base_ref, method="ppo", dataset=config.dataset,
                                metrics=metrics["metrics"], training=metrics["training"], params=params_record,
                                description=f"PPO-detoxified LoRA adapter, started from {config.policy}.")

    metrics = common.finish_run(run_id=run_id, ckpt=ckpt, folder=final, output=config.output,
                                push_to_hub=config.push_to_hub, evaluate=evaluate, card=card)
    print(evaluation.format_table([metrics]))
    m = metrics["metrics"]
    d = m["toxicity_diff_vs_start"]
    print(f"[ppo] toxicity {m['toxicity_start']['mean']:.4f} -> {m['toxicity']['mean']:.4f} "
          f"(paired diff {d['mean']:+.4f}, 95% CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], n={d['n']})")
    print(f"[ppo] published {config.output} revision {metrics['revision']} (run {run_id})")
    return metrics


if __name__ == "__main__":
    sys.exit(common.cli(main))
