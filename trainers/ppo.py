"""PPO detoxification of the LoRA summarizer (the reference recipe's phase 3), for encoder-decoder models.

Policy: a trainable "ppo" adapter initialised from the LoRA weights, plus a value head on the decoder's hidden
states. Reference: the same LoRA weights as a frozen "ref" adapter on the SAME base copy. Each step samples
summaries of distinct training dialogues (every sampling option explicit, so the log-probs PPO scores are those of
the distribution it sampled from), scores them with the reward (offline: 1 - the profanity classifier's p(toxic)),
optionally minus a length term (a toxicity reward otherwise pays for writing less), subtracts a per-token KL
penalty against the reference (adaptive coefficient), and runs clipped PPO epochs over minibatches (workbench/ppo.py
holds the maths). accelerate owns devices and processes: one device per process, DDP for the update under a
multi-process launch. Every step is logged to results/logs/<run>.jsonl; a killed run resumes bit for bit.
At the end the PPO adapter and its LoRA start are both evaluated greedily on the whole test split, with the same
length limit as the rollouts: toxicity, ROUGE-1/2 and summary length with paired differences and 95% CIs.

    python -m trainers.ppo --config configs/recipes/ppo.yaml    # the demo family's PPO adapter, offline
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

from trainers import common, options, tracking
from trainers.callbacks import ProgressWriter, StopFlag, progress_path, stop_exit
from trainers.options import ConfigError, arg
from workbench import evaluation, generation, modeling, paths, ppo, prompts, rewards, scoring, store, toxicity
from workbench.generation import GenerationSettings, generate
from workbench.io import atomic_write_json


@dataclasses.dataclass
@options.defaults(learning_rate=1e-4, init_kl_coef=0.2, target_kl=2.0)
class PpoRecipe(options.Tracking, options.Checkpoints, options.Weights, options.Evaluation, options.Publishing,
                options.TrainData, options.Policy, ppo.PPOConfig):
    """The PPO hyper-parameters are workbench.ppo.PPOConfig's own fields (the update reads this recipe as one)."""

    help_texts = {  # for PPOConfig's fields, which carry no help of their own, and the length limit
        "learning_rate": "Adam learning rate for the adapter and value head", "batch_size": "rollouts per step",
        "mini_batch_size": "minibatch size for the PPO epochs", "ppo_epochs": "optimisation epochs over each batch",
        "gamma": "discount", "lam": "GAE lambda", "cliprange": "policy ratio clip", "cliprange_value": "value clip",
        "vf_coef": "value loss weight", "init_kl_coef": "initial KL penalty coefficient",
        "target_kl": "target KL (sum over a summary's tokens) for the adaptive controller",
        "horizon": "adaptive KL controller horizon", "adaptive_kl": "adapt the KL coefficient towards --target-kl",
        "max_grad_norm": "gradient clipping",
        "max_new_tokens": "longest summary, for the rollouts and the final evaluation alike"}
    reward: str = arg("profanity-check:one_minus_p", "reward: profanity-check[:one_minus_p|logodds], "
                      "hf:<model>[:logit|logodds|one_minus_p], or reward-model:<store name>; the default, "
                      "1 - p(toxic), pushes only toxic summaries (docs/TRAINERS.md)")
    steps: int = arg(60, "PPO steps (one rollout batch each)", positive=True)
    # rollouts
    max_source_length: int = arg(512, "truncate prompts to this many tokens")
    min_new_tokens: int = arg(0, "rollout minimum length; EOS is masked at the same positions when the rollouts are "
                              "scored, so sampling and scoring see one distribution")
    top_k: int = arg(0, "rollout sampling top-k (0 = off, as the reference recipe)", within="[0, inf)")
    top_p: float = arg(1.0, "rollout nucleus sampling p", within="(0, 1]")
    heated_share: float = arg(0.5, "oversample rows whose reference summary is toxic to this share of each batch "
                              "(0 = plain random batches)", within="[0, 1)")
    # reward shaping
    length_penalty: float = arg(1.0, "subtract this times a summary's relative shortfall below --length-ratio x its "
                                "dialogue's reference length (words) from the reward (0 = off): a toxicity reward "
                                "otherwise pays for writing less", within="[0, inf)")
    rouge_weight: float = arg(1.0, "add this times the sample's mean ROUGE-1/ROUGE-2 F1 against its dialogue's "
                              "training references to the reward (0 = off): keeps the summary a summary while the "
                              "toxicity reward moves the policy", within="[0, inf)")
    length_ratio: float = arg(1.2, "minimum summary length as a multiple of the reference summary's words",
                              positive=True)
    seed: int = arg(0, "random seed")
    save_steps: int = arg(10, "checkpoint every N steps (a restarted command resumes)", positive=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch_size", "mini_batch_size", "ppo_epochs", "horizon", "target_kl"):  # PPOConfig's fields
            options.check_value(name, getattr(self, name), {"positive": True})
        options.check_within("init_kl_coef", self.init_kl_coef, "[0, inf)")
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(f"mini_batch_size: must divide batch_size ({self.batch_size})")
        options.check_within("min_new_tokens", self.min_new_tokens, f"[0, {self.max_new_tokens}]")
        check_reward("reward", self.reward)


def check_reward(name: str, spec: str) -> None:
    """A reward spec (see --reward), checked before any model loads."""
    try:
        source, ref, _ = rewards.parse_spec(spec)
    except rewards.RewardSpecError as err:
        raise ConfigError(f"{name}: {err}") from None
    if source == "reward-model" and not ref.startswith((".", "/", "~")):  # a local folder is checked when it loads
        options.check_repo_id(name, ref)


# Options that do not change what is trained (evaluation, output, bookkeeping): a run may resume with other values.
# `steps` is among them: the trajectory up to a step does not depend on it, so a run can be extended.
NOT_TRAINING = frozenset({"report_to", "eval_split", "eval_limit", "eval_batch_size", "output", "push_to_hub",
                          "checkpoint_dir", "fresh", "save_steps", "steps"})


# ------------------------------------------------------------------------------------------------ setup


def load_policy(config: PpoRecipe, device: torch.device | str = "cpu"):
    """(peft model with 'ref' frozen and 'ppo' trainable adapters on one base, tokenizer, base ref, lora folder),
    on `device` (this process's device)."""
    lora_folder = common.resolve_model(config.policy, field="policy")
    if not (lora_folder / "adapter_config.json").is_file():
        raise ConfigError(f"policy: {config.policy} is not a LoRA adapter (no adapter_config.json)")
    base_ref = config.base or json.loads((lora_folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    base_folder = common.resolve_model(base_ref, field="base")
    base = modeling.load_model(base_folder, dtype="fp32", device=str(device))
    model = modeling.attach_adapter(base, lora_folder, "ref")
    model = modeling.attach_adapter(model, lora_folder, "ppo", trainable=True)  # with the start's minimum length
    model.set_adapter("ppo")  # the only adapter that trains; the reference is reached by adapter_names
    model.to(device).eval()  # no dropout: old and new log-probs must agree before the first update
    return model, modeling.load_tokenizer(base_folder), base_ref, lora_folder


def rng_state(rng: random.Random, gen: torch.Generator) -> dict:
    """Every random stream the loop draws from, for this process: batches (rng), sampling (torch, and the device's
    generator on an accelerator), minibatch order (gen) and Python's global generator."""
    state = {"rng": rng.getstate(), "python": random.getstate(), "torch": torch.get_rng_state(),
             "generator": gen.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict, rng: random.Random, gen: torch.Generator) -> None:
    rng.setstate(state["rng"])
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    gen.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(folder: Path, step: int, t: "Training") -> None:
    """Write a checkpoint to a temporary folder, then swap it in: the previous checkpoint is moved aside (not deleted)
    until the new one is in place, so a kill at any moment leaves one complete checkpoint (see latest_checkpoint).
    The main process writes the weights and optimizer; every process writes its own random streams."""
    tmp, old = folder.parent / f".tmp-{folder.name}", folder.parent / f".old-{folder.name}"
    if t.state.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        t.model.save_pretrained(tmp / "adapter", selected_adapters=["ppo"], safe_serialization=True,
                                save_embedding_layers=False)  # see save_final
        torch.save({"step": step, "value_head": t.value_head.state_dict(), "optimizer": t.optimizer.state_dict(),
                    "kl_ctl": t.kl_ctl.state_dict(), "processes": t.state.num_processes}, tmp / "trainer_state.pt")
    t.state.wait_for_everyone()
    torch.save(rng_state(t.rng, t.gen), tmp / f"rng-{t.state.process_index}.pt")
    t.state.wait_for_everyone()
    if t.state.is_main_process:
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    t.state.wait_for_everyone()


def latest_checkpoint(ckpt: Path) -> Path | None:
    """The checkpoint to resume from: `latest`, or the previous one if a kill interrupted the swap in between."""
    for name in ("latest", ".old-latest"):
        if (ckpt / name / "trainer_state.pt").is_file():
            return ckpt / name
    return None


def adapter_files(folder: Path) -> Path:
    """peft saves non-default adapters in a subfolder named after the adapter."""
    return folder / "ppo" if (folder / "ppo" / "adapter_config.json").exists() else folder


def load_checkpoint(folder: Path, t: "Training", config: PpoRecipe) -> int:
    """Restore weights, optimizer, KL coefficient and this process's random streams exactly as they were saved, so
    the resumed run continues the interrupted one bit for bit (nothing is reseeded afterwards)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(adapter_files(folder / "adapter") / "adapter_model.safetensors", device=str(t.device))
    set_peft_model_state_dict(t.model, weights, adapter_name="ppo")
    # trainer_state.pt / rng-<rank>.pt are our own files (optimizer moments, RNG states), written by save_checkpoint.
    state = torch.load(folder / "trainer_state.pt", weights_only=True, map_location=t.device)
    t.value_head.load_state_dict(state["value_head"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.kl_ctl.load_state_dict(state["kl_ctl"])
    streams = folder / f"rng-{t.state.process_index}.pt"
    if streams.is_file():
        set_rng_state(torch.load(streams, weights_only=True), t.rng, t.gen)
    else:  # resumed with more processes than saved: a new rank starts its own seeded streams
        print(f"[ppo] no random state saved for process {t.state.process_index}; seeding it afresh")
        seed = config.seed + t.state.process_index + 7919 * state["step"]
        t.rng.seed(seed)
        torch.manual_seed(seed)
        t.gen.manual_seed(seed)
    return state["step"]


def batch_indices(rows: list[dict], rng: random.Random, batch_size: int, heated_share: float,
                  is_toxic: list[bool]) -> list[int]:
    """`batch_size` distinct rows: up to `heated_share` of them drawn from the toxic ones, the rest from all the
    others (sampling without replacement across both parts, so no row appears twice)."""
    if batch_size > len(rows):
        raise ConfigError(f"batch_size: {batch_size} rollouts per step but only {len(rows)} training rows")
    toxic = [i for i in range(len(rows)) if is_toxic[i]]
    heated = rng.sample(toxic, min(round(batch_size * heated_share), len(toxic)))
    taken = set(heated)
    rest = [i for i in range(len(rows)) if i not in taken]
    return heated + rng.sample(rest, batch_size - len(heated))


def length_shortfall(texts: list[str], reference_words: list[int], ratio: float) -> torch.Tensor:
    """Relative shortfall of each summary below `ratio` x its reference's word count (0 when long enough)."""
    words = torch.tensor([len(t.split()) for t in texts], dtype=torch.float32)
    target = torch.tensor(reference_words, dtype=torch.float32).clamp(min=1) * ratio
    return (1 - words / target).clamp(min=0)


# ------------------------------------------------------------------------------------------------ loop


def sampling_config(config: PpoRecipe, model_config):
    """Rollout sampling, every parameter explicit: pure ancestral sampling at temperature 1 (optionally top-k/top-p)
    with one length limit. Nothing is left for a model's own generation_config to fill in."""
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=True, num_beams=1, temperature=1.0, top_k=config.top_k, top_p=config.top_p, min_p=None,
        typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0, encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0, encoder_no_repeat_ngram_size=0, bad_words_ids=None, suppress_tokens=None,
        begin_suppress_tokens=None, forced_bos_token_id=None, forced_eos_token_id=None, length_penalty=1.0,
        min_length=0, min_new_tokens=config.min_new_tokens, max_new_tokens=config.max_new_tokens,
        renormalize_logits=False, decoder_start_token_id=model_config.decoder_start_token_id,
        eos_token_id=model_config.eos_token_id, pad_token_id=model_config.pad_token_id)


def sample(model, enc, gen_config, adapter_names: list[str], **kwargs):
    """model.generate with `gen_config` alone: the model's own generation_config is set aside while sampling, since
    transformers fills every unset option from it. A model trained with a copy bias samples with it, as
    ppo.seq2seq_logprobs scores."""
    from transformers import GenerationConfig

    inner = model.get_base_model()
    saved, inner.generation_config = inner.generation_config, GenerationConfig()
    kwargs.update(generation.copy_bias_processors(model, enc["input_ids"], gen_config.pad_token_id))
    try:
        return model.generate(**enc, generation_config=gen_config, adapter_names=adapter_names, **kwargs)
    finally:
        inner.generation_config = saved


def shaped_scores(texts: list[str], reward_fn, config: PpoRecipe, rows: list[dict] | None) -> torch.Tensor:
    """The reward of each sampled summary: the reward function, minus the length term and plus the ROUGE term
    (both against the dialogue's training references in `rows`; skipped without rows)."""
    scores = torch.tensor(reward_fn(texts), dtype=torch.float32)
    if rows is None:
        return scores
    if config.length_penalty:
        words = [len(r["summary"].split()) for r in rows]
        scores = scores - config.length_penalty * length_shortfall(texts, words, config.length_ratio)
    if config.rouge_weight:
        rouge = scoring.rouge_per_example(texts, [r["references"] for r in rows])
        scores = scores + config.rouge_weight * torch.tensor([(x["rouge1"] + x["rouge2"]) / 2 for x in rouge])
    return scores


def rollout(model, value_head, tokenizer, prompts_: list[str], config: PpoRecipe, reward_fn, kl_ctl,
            rows: list[dict] | None = None):
    """Sample summaries, score them, and compute everything PPO needs (no gradients), on the model's device."""
    device = next(model.parameters()).device
    enc = tokenizer(prompts_, return_tensors="pt", padding=True, truncation=True,
                    max_length=config.max_source_length).to(device)
    names = ["ppo"] * len(prompts_)
    with torch.no_grad():
        sequences = sample(model, enc, sampling_config(config, model.config), names)
        response_ids, response_mask = ppo.split_generated(sequences, tokenizer.pad_token_id, tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        scores = shaped_scores(texts, reward_fn, config, rows).to(device)
        common_args = (enc.input_ids, enc.attention_mask, response_ids, response_mask)
        logprobs, _, hidden = ppo.seq2seq_logprobs(model, *common_args, return_hidden=True, adapter_names=names,
                                                   min_new_tokens=config.min_new_tokens)
        values = value_head(hidden) * response_mask
        ref_logprobs, _ = ppo.seq2seq_logprobs(model, *common_args, adapter_names=["ref"] * len(prompts_),
                                               min_new_tokens=config.min_new_tokens)
        prepared = ppo.prepare_advantages(scores, logprobs, ref_logprobs, values, response_mask, kl_ctl.value,
                                          gamma=config.gamma, lam=config.lam)
    batch = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "response_ids": response_ids,
             "response_mask": response_mask, "old_logprobs": logprobs, "old_values": values,
             "advantages": prepared["advantages"], "returns": prepared["returns"]}
    return batch, texts, scores, prepared


@dataclasses.dataclass
class Training:
    """Everything the loop updates and a checkpoint holds. `model`/`value_head` are the plain modules (rollouts,
    saving); `ddp_model`/`ddp_value_head` are what accelerate prepared for the update (DDP wrappers when several
    processes train)."""

    state: object
    accelerator: object
    model: object
    value_head: ppo.ValueHead
    ddp_model: object
    ddp_value_head: object
    optimizer: object
    params: list
    kl_ctl: object
    rng: random.Random
    gen: torch.Generator
    tokenizer: object = None

    @property
    def device(self) -> torch.device:
        return self.state.device


def build_training(config: PpoRecipe, model) -> Training:
    """Value head, optimizer and KL controller, prepared by accelerate on this process's device."""
    from accelerate import Accelerator

    state = process_state()
    accelerator = Accelerator(cpu=state.device.type == "cpu")
    value_head = ppo.ValueHead(model.config.d_model).to(state.device)
    params = [p for p in model.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    ddp_model, ddp_value_head, optimizer = accelerator.prepare(model, value_head, optimizer)
    kl_ctl = (ppo.AdaptiveKLController(config.init_kl_coef, config.target_kl, config.horizon) if config.adaptive_kl
              else ppo.FixedKLController(config.init_kl_coef))
    rank = state.process_index
    return Training(state, accelerator, model, value_head, ddp_model, ddp_value_head, optimizer, params, kl_ctl,
                    random.Random(config.seed + rank), torch.Generator().manual_seed(config.seed + rank))


def train_step(t: Training, step: int, rows: list[dict], is_toxic: list[bool], config: PpoRecipe,
               reward_fn, scorer) -> dict:
    """One rollout batch and its PPO epochs; returns the step's log row (averaged over processes)."""
    picked = batch_indices(rows, t.rng, config.batch_size, config.heated_share, is_toxic)
    batch, texts, scores, prepared = rollout(
        t.model, t.value_head, t.tokenizer, [prompts.zero_shot(rows[i]["dialogue"]) for i in picked], config,
        reward_fn, t.kl_ctl, rows=[rows[i] for i in picked])
    stats = ppo.ppo_update(t.ddp_model, t.ddp_value_head, t.optimizer, batch, config, t.params,
                           generator=t.gen, accelerator=t.accelerator, model_config=t.model.config,
                           min_new_tokens=config.min_new_tokens)
    words = [len(x.split()) for x in texts]
    local = {"reward_mean": scores.mean(), "reward_std": scores.std(),
             "toxicity_mean": float(sum(scorer.score(texts)) / len(texts)), "kl": prepared["stats"]["kl"],
             "response_length": batch["response_mask"].sum(1).float().mean(), "words": sum(words) / len(words),
             **stats}
    keys = sorted(local)
    values = torch.stack([torch.as_tensor(local[k], dtype=torch.float32, device=t.device).reshape(()) for k in keys])
    stats = dict(zip(keys, t.accelerator.reduce(values, "mean").tolist()))
    t.kl_ctl.update(stats["kl"], config.batch_size * t.state.num_processes)  # same coefficient in every process
    return {"step": step + 1, "kl_coef": t.kl_ctl.value, **stats}


def process_state():
    """accelerate's view of this process (device, rank, main process, barriers); asked for CPU processes on a machine
    without CUDA, or a torchrun / accelerate-launch CPU worker would not see the launch (as common.device)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def prepare(config: PpoRecipe) -> tuple[list[dict], list[dict], dict, Path, str]:
    """Everything that can be wrong with the request fails here, before any model loads: data, batch size, reward,
    and a checkpoint folder holding another run's settings. Returns (rows, eval rows, split info, ckpt, run id)."""
    rows, eval_rows, split_info = common.load_train_eval(config)
    if config.batch_size > len(rows):
        raise ConfigError(f"batch_size: {config.batch_size} rollouts per step but the training split has only "
                          f"{len(rows)} rows; lower --batch-size or use more data")
    texts = [f"{r['dialogue']}\n{r['summary']}" for r in rows]
    return rows, eval_rows, split_info, *common.start_checkpoints(config, "ppo", NOT_TRAINING, texts)


def train(t: Training, config: PpoRecipe, rows: list[dict], ckpt: Path, log_path: Path, reward_fn,
          scorer) -> int:
    """The PPO loop from the latest checkpoint (if any) to `config.steps`; returns the step it resumed after."""
    from tqdm.auto import tqdm

    is_toxic = [s > 0.5 for s in scorer.score([r["summary"] for r in rows])]
    start_step, resume = 0, latest_checkpoint(ckpt)
    if resume is not None:
        start_step = load_checkpoint(resume, t, config)
        if t.state.is_main_process:
            print(f"[ppo] resuming after step {start_step} from {resume}")
    log_rows = [json.loads(x) for x in log_path.read_text().splitlines()] if log_path.exists() else []
    log_rows = [r for r in log_rows if r["step"] <= start_step]  # steps after the checkpoint are redone
    bar = tqdm(range(start_step, config.steps), desc="ppo", unit="step", initial=start_step, total=config.steps,
               disable=not t.state.is_main_process)
    stop = StopFlag().install()  # SIGTERM / Ctrl-C: finish the step, checkpoint, leave (the Train tab's Stop)
    main_process = t.state.is_main_process
    progress = ProgressWriter(progress_path(ckpt), max_steps=config.steps) if main_process else None
    tracker = tracking.LoopTracker(config.report_to, log_path.stem) if main_process else None
    try:
        if progress:
            progress.begin(start_step)
        for step in bar:
            row = train_step(t, step, rows, is_toxic, config, reward_fn, scorer)
            log_rows.append(row)
            bar.set_postfix(reward=f"{row['reward_mean']:.2f}", kl=f"{row['kl']:.2f}",
                            tox=f"{row['toxicity_mean']:.2f}", words=f"{row['words']:.1f}")
            if progress:
                progress.log(step + 1, **{k: v for k, v in row.items() if k != "step"})
                tracker.log(row, step + 1)
            stopping = stop_agreed(stop.requested, t.state)
            if stopping or (step + 1) % config.save_steps == 0 or step + 1 == config.steps:
                if main_process:  # the log first: rows past the checkpoint a kill falls back to are redone
                    evaluation.atomic_write_jsonl(log_path, log_rows)
                save_checkpoint(ckpt / "latest", step + 1, t)
            if stopping:
                if progress:
                    progress.end(step + 1, stopped=True)
                raise SystemExit(stop_exit(step + 1, ckpt))
        if progress:
            progress.end(config.steps)
    finally:
        stop.restore()
        if progress:
            progress.close()
            tracker.finish()
    return start_step


def stop_agreed(requested: bool, state) -> bool:
    """Whether any process was asked to stop: every rank must leave after the same step (a launcher signals them all,
    but not necessarily between the same two steps)."""
    if state.num_processes == 1:
        return requested
    flag = torch.tensor([float(requested)], device=state.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def main(argv: list[str] | None = None) -> dict:
    """setup (data, checkpoint folder, reward, policy) -> PPO loop -> evaluate the adapter against its LoRA start on
    the same dialogues -> publish. Data-parallel under torchrun / accelerate launch: each process rolls out its own
    batch, and the main process evaluates and publishes once."""
    config = options.parse(PpoRecipe, argv, description=__doc__)
    state = process_state()
    watch = common.start(config, "ppo", config.policy, config.dataset, seed=config.seed + state.process_index,
                         announce=state.is_main_process)
    rows, eval_rows, split_info, ckpt, run_id = prepare(config)
    reward_fn, reward_name = rewards.load_reward(config.reward)
    scorer = toxicity.load_scorer(config.toxicity)
    model, tokenizer, base_ref, _ = load_policy(config, state.device)
    t = build_training(config, model)
    t.tokenizer = tokenizer
    if state.is_main_process:
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"[ppo] policy {config.policy} on {base_ref} ({state.device}); reward: {reward_name}; {n_trainable:,} "
              f"trainable adapter parameters + value head; {split_info['note']}; {state.num_processes} "
              f"process(es) x {config.batch_size} rollouts per step")
    start_step = train(t, config, rows, ckpt, paths.RESULTS_DIR / "logs" / f"{run_id}.jsonl", reward_fn, scorer)
    t.ddp_model, t.ddp_value_head = t.model, t.value_head  # the data-parallel wrappers go with the process group
    common.end_distributed(t.accelerator)  # training is over: no more collectives; all ranks leave together
    if not state.is_main_process:
        return {}
    training = training_record(config, t, reward_name, len(rows), split_info, start_step=start_step, watch=watch,
                               run_id=run_id)
    return finish(config, model, tokenizer, base_ref, eval_rows, split_info, scorer=scorer, training=training,
                  watch=watch, run_id=run_id, ckpt=ckpt)


def training_record(config: PpoRecipe, t: Training, reward_name: str, n_rows: int, split_info: dict, *,
                    start_step: int, watch: common.Stopwatch, run_id: str) -> dict:
    """The "training" part of the run record: the PPO settings, the rollout sampling spelled out, and the data."""
    sampling = {"do_sample": True, "num_beams": 1, "temperature": 1.0, "top_k": config.top_k, "top_p": config.top_p,
                "min_new_tokens": config.min_new_tokens, "max_new_tokens": config.max_new_tokens,
                "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
    return {"method": "ppo", "policy_start": config.policy, "reward": reward_name, "steps": config.steps,
            "processes": t.state.num_processes, "final_kl_coef": t.kl_ctl.value, "sampling": sampling,
            **{k: getattr(config, k) for k in ("batch_size", "mini_batch_size", "ppo_epochs", "learning_rate",
                                               "init_kl_coef", "target_kl", "adaptive_kl", "length_penalty",
                                               "length_ratio", "rouge_weight", "heated_share", "dataset")},
            "split": config.train_split, "n": n_rows, "split_info": split_info, "seed": config.seed,
            **options.recipe_record(config), "train_seconds": round(watch.seconds, 1),
            "log_file": f"logs/{run_id}.jsonl", "resumed_from_step": start_step or None}


def save_final(model, tokenizer, base_ref: str, ckpt: Path, dtype: str = "fp32") -> Path:
    """The trained adapter as it is published: safetensors in `dtype` (the in-memory adapter rounded the same way,
    common.adapters_in), its config naming the base by store/Hub id."""
    final = ckpt / "final"
    shutil.rmtree(final, ignore_errors=True)
    with common.adapters_in(model, dtype):
        # the vocabulary is never resized here; peft's "auto" would ask the Hub for the base's config to find out
        model.save_pretrained(final, selected_adapters=["ppo"], safe_serialization=True, save_embedding_layers=False)
    final = adapter_files(final)
    adapter_config = json.loads((final / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = base_ref
    atomic_write_json(final / "adapter_config.json", adapter_config)
    modeling.save_adapter_min_new_tokens(model, "ppo", final)  # the start's, which PPO's rollouts set aside
    tokenizer.save_pretrained(final)
    return final


def evaluate_pair(model, tokenizer, eval_rows: list[dict], settings: GenerationSettings, scorer,
                  batch_size: int) -> tuple[list[str], dict, list[dict]]:
    """Greedy summaries of the LoRA start ("ref") and the PPO adapter on the same rows, paired metrics, and the
    first toxic starts with their PPO summaries: (PPO outputs, paired metrics, examples)."""
    dialogue_prompts = [prompts.zero_shot(r["dialogue"]) for r in eval_rows]
    references = [r["references"] for r in eval_rows]
    outputs, tox, rouge = {}, {}, {}
    for name in ("ref", "ppo"):
        outputs[name] = generate(model, tokenizer, dialogue_prompts, settings, adapter_names=[name] * len(eval_rows),
                                 batch_size=batch_size, progress=True)
        tox[name] = scorer.score(outputs[name])
        rouge[name] = scoring.rouge_per_example(outputs[name], references)
    extra = evaluation.paired_vs_start(outputs["ref"], outputs["ppo"], tox["ref"], tox["ppo"], rouge["ref"],
                                       rouge["ppo"])
    examples = [{"fname": r["fname"], "before": b, "after": a}
                for r, b, a, tb in zip(eval_rows, outputs["ref"], outputs["ppo"], tox["ref"]) if tb > 0.5][:5]
    return outputs["ppo"], extra, examples


def finish(config: PpoRecipe, model, tokenizer, base_ref: str, eval_rows: list[dict], split_info: dict, *,
           scorer, training: dict, watch: common.Stopwatch, run_id: str, ckpt: Path) -> dict:
    """Evaluate the PPO adapter and its LoRA start greedily on the evaluation rows (paired by example), publish and
    record (common.finish_run)."""
    final = save_final(model, tokenizer, base_ref, ckpt, config.save_dtype)
    settings = GenerationSettings(max_new_tokens=config.max_new_tokens)  # the rollouts' length limit
    n_params = modeling.count_parameters(model)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params_record = {"total": n_params["total"], "trainable": n_trainable,
                     "trainable_share": n_trainable / n_params["total"]}

    def evaluate() -> dict:
        ppo_outputs, extra, examples = evaluate_pair(model, tokenizer, eval_rows, settings, scorer,
                                                     config.eval_batch_size)
        run = watch.run_info(model_id=config.output, method="ppo", base_model=base_ref, dataset=config.dataset,
                             split=config.eval_split, split_info=split_info, params=params_record,
                             training={**training, "examples": examples}, run_id=run_id)
        return evaluation.evaluate(model, tokenizer, eval_rows, run, settings=settings, scorer=scorer,
                                   batch_size=config.eval_batch_size, extra_metrics=extra, predictions=ppo_outputs,
                                   write=False)

    def card(metrics: dict) -> str:
        return store.model_card(config.output, base_model=base_ref, method="ppo", dataset=config.dataset,
                                metrics=metrics["metrics"], training=metrics["training"], params=params_record,
                                description=f"PPO-detoxified LoRA adapter, started from {config.policy}.")

    metrics = common.finish_run(run_id=run_id, ckpt=ckpt, folder=final, output=config.output,
                                push_to_hub=config.push_to_hub, evaluate=evaluate, card=card)
    print(evaluation.format_table([metrics]))
    report(metrics)
    print(f"[ppo] published {config.output} revision {metrics['revision']} (run {run_id})")
    return metrics


def report(metrics: dict) -> None:
    m = metrics["metrics"]
    d, w = m["toxicity_diff_vs_start"], m["length_words_diff_vs_start"]
    print(f"[ppo] toxicity {m['toxicity_start']['mean']:.4f} -> {m['toxicity']['mean']:.4f} "
          f"(paired diff {d['mean']:+.4f}, 95% CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], n={d['n']})")
    print(f"[ppo] length {m['length_words_start']['mean']:.1f} -> {m['length_words']['mean']:.1f} words (paired diff "
          f"{w['mean']:+.2f} [{w['ci_low']:+.2f}, {w['ci_high']:+.2f}]); ROUGE-1 diff "
          f"{m['rouge1_diff_vs_start']['mean']:+.4f}, ROUGE-2 diff {m['rouge2_diff_vs_start']['mean']:+.4f}")


if __name__ == "__main__":
    sys.exit(common.cli(main))
