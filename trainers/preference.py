"""Preference optimisation beside PPO: train a LoRA adapter on chosen/rejected summary pairs with trl's preference
trainers that accept encoder-decoder models, from the same start as PPO (an existing LoRA adapter), then evaluate it
against that start and publish it like the other trainers.

    python -m trainers.preference --preferences local/flan-t5-demo-lora-demo-pairs            # ORPO
    python -m trainers.preference --preferences you/votes --loss simpo --output you/summary-simpo

Losses (trl 1.16; its core DPOTrainer is decoder-only, these take T5):
    orpo    trl.experimental.orpo.ORPOTrainer: NLL on `chosen` + beta x odds-ratio term; reference-free
    cpo     trl.experimental.cpo.CPOTrainer, loss_type "sigmoid": DPO-style margin without a reference model +
            cpo_alpha x NLL on `chosen`
    simpo   CPOTrainer with loss_type "simpo" (length-normalised margin with target gamma), cpo_alpha 0 by default

The preference data is a dataset from workbench.preferences (Compare votes or `python -m trainers.pairs`) or a
.jsonl file with prompt/chosen/rejected. A share of it (whole votes, never split) is held out to measure how often
the trained adapter prefers `chosen`. The evaluation generates greedily with the start adapter and the trained one
on the same base copy and reports toxicity, ROUGE-1/2 and length with paired differences and 95% CIs.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path
from typing import Literal


from trainers import common, options
from trainers.options import ConfigError, arg
from workbench import evaluation, generation, modeling, preferences, prompts, results, scoring, store, toxicity
from workbench.generation import GenerationSettings, generate
from workbench.io import read_jsonl

LOSSES = {"orpo": "orpo", "cpo": "cpo", "simpo": "cpo"}  # loss -> the method name a run records
START, TRAINED = "start", "default"  # adapter names: the frozen start (evaluation only) and the one that trains
NOT_TRAINING = frozenset({"output", "push_to_hub", "checkpoint_dir", "fresh", "dataset", "eval_split", "eval_limit",
                          "eval_batch_size", "max_new_tokens", "toxicity", "logging_steps", "save_steps"})


@dataclasses.dataclass
@options.defaults(max_steps=200, batch_size=8, learning_rate=2e-4, seed=0, logging_steps=10, save_steps=100)
class PreferenceRecipe(options.Checkpoints, options.Weights, options.TrainerOptions, options.Evaluation,
                       options.Publishing, options.EvalData, options.Policy):
    """The policy is the LoRA adapter to start from (PPO's start)."""

    preferences: str | None = arg(None, "preference data: a dataset in the local store (workbench.preferences, "
                                  "e.g. from trainers.pairs) or a .jsonl file with prompt, chosen, rejected")
    # the loss
    loss: Literal["orpo", "cpo", "simpo"] = arg("orpo", "the preference loss (see above)")
    beta: float | None = arg(None, "loss strength: ORPO's lambda, CPO/SimPO's beta (None = 0.1; SimPO 2.0)",
                             positive=True)
    cpo_alpha: float | None = arg(None, "weight of the NLL term on chosen for cpo/simpo (None = 1.0; SimPO 0)",
                                  within="[0, inf)")
    simpo_gamma: float = arg(0.5, "SimPO target reward margin")
    held_out: float = arg(0.1, "share of votes held out to measure preference accuracy (0 = none)",
                          within="[0, 1)")
    # lengths
    max_source_length: int = arg(512, "truncate prompts to this many tokens (trl does not for encoder-decoders)",
                                 positive=True)
    max_completion_length: int = arg(128, "truncate chosen/rejected summaries to this many tokens", positive=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preferences is None:
            known = ", ".join(preferences.list_datasets()) or "none yet: run python -m trainers.pairs"
            raise ConfigError(f"preferences: name a preference dataset (in the local store: {known}) or a .jsonl file")

    @property
    def method(self) -> str:
        return LOSSES[self.loss]

    def loss_settings(self) -> dict:
        """The loss's own hyper-parameters, defaults filled in."""
        simpo = self.loss == "simpo"
        beta = self.beta if self.beta is not None else (2.0 if simpo else 0.1)
        if self.loss == "orpo":
            return {"beta": beta}
        alpha = self.cpo_alpha if self.cpo_alpha is not None else (0.0 if simpo else 1.0)
        return {"beta": beta, "loss_type": "simpo" if simpo else "sigmoid", "cpo_alpha": alpha,
                **({"simpo_gamma": self.simpo_gamma} if simpo else {})}


# ------------------------------------------------------------------------------------------------ data


def load_preference_pairs(spec: str) -> tuple[list[dict], str]:
    """(pairs with vote_id, prompt, chosen, rejected; a description) from a store dataset or a .jsonl file."""
    if spec.endswith(".jsonl") or Path(spec).is_file():
        try:
            rows = read_jsonl(spec)
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise ConfigError(f"preferences: {spec} is not a readable jsonl file ({str(err)[:120]})") from None
        where = Path(spec).name
    else:
        try:
            rows = preferences.load_pairs(spec)
        except preferences.PreferenceError as err:
            raise ConfigError(f"preferences: {err}") from None
        where = spec
    pairs = []
    for i, row in enumerate(rows):
        texts = [row.get(k) if isinstance(row, dict) else None for k in ("prompt", "chosen", "rejected")]
        if not all(isinstance(t, str) for t in texts) or not (texts[0].strip() and texts[1].strip()):
            raise ConfigError(f"preferences: {where} pair {i}: needs a non-empty prompt and chosen and a rejected text")
        pairs.append({"vote_id": str(row.get("vote_id", i)), "prompt": row["prompt"], "chosen": row["chosen"],
                      "rejected": row["rejected"]})
    if len(pairs) < 2:
        raise ConfigError(f"preferences: {where} has {len(pairs)} pair(s); at least 2 are needed")
    return pairs, where


def split_votes(pairs: list[dict], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out): whole votes are held out, so no vote's pairs sit on both sides."""
    votes = sorted({p["vote_id"] for p in pairs})
    n_held = min(round(share * len(votes)), len(votes) - 1) if share > 0 else 0
    held = set(random.Random(seed).sample(votes, n_held))
    return [p for p in pairs if p["vote_id"] not in held], [p for p in pairs if p["vote_id"] in held]


def to_dataset(pairs: list[dict], tokenizer, max_source_length: int):
    """A datasets.Dataset of prompt/chosen/rejected. trl tokenises an encoder-decoder's prompt without truncation,
    so prompts are cut to max_source_length tokens here."""
    import datasets

    def cut(prompt: str) -> str:
        ids = tokenizer(prompt, truncation=False).input_ids
        if len(ids) <= max_source_length:
            return prompt
        return tokenizer.decode(ids[: max_source_length - 1], skip_special_tokens=True)

    return datasets.Dataset.from_list([{"prompt": cut(p["prompt"]), "chosen": p["chosen"], "rejected": p["rejected"]}
                                       for p in pairs])


# ------------------------------------------------------------------------------------------------ training


def policy_adapter(config: PreferenceRecipe) -> tuple[Path, str, Path]:
    """(adapter folder, base ref, base folder) of the start, checked before any checkpoint folder or model."""
    folder = common.resolve_model(config.policy, field="policy")
    if not (folder / "adapter_config.json").is_file():
        raise ConfigError(f"policy: {config.policy} is not a LoRA adapter (no adapter_config.json); preference "
                          "optimisation starts from an adapter, as PPO does")
    base_ref = config.base or json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    return folder, base_ref, common.resolve_model(base_ref, field="base")


def load_policy(config: PreferenceRecipe, device):
    """(peft model whose TRAINED adapter starts as a trainable copy of the policy adapter, tokenizer, base ref,
    policy folder). The start adapter is attached for evaluation only, after training."""
    folder, base_ref, base_folder = policy_adapter(config)
    base = modeling.load_model(base_folder, dtype="fp32", device=str(device))
    model = modeling.attach_adapter(base, folder, TRAINED, trainable=True)  # with the start's minimum length
    return model.to(device), modeling.load_tokenizer(base_folder), base_ref, folder


def trainer_for(config: PreferenceRecipe, model, tokenizer, train, held, ckpt: Path):
    """trl's ORPO or CPO trainer with this recipe's arguments."""
    if config.loss == "orpo":
        from trl.experimental.orpo import ORPOConfig as Args, ORPOTrainer as Trainer
    else:
        from trl.experimental.cpo import CPOConfig as Args, CPOTrainer as Trainer
    args = common.trainer_arguments(
        config, ckpt, args_class=Args, per_device_eval_batch_size=config.batch_size, lr_scheduler_type="linear",
        max_length=config.max_source_length + config.max_completion_length,
        max_completion_length=config.max_completion_length, gradient_checkpointing=False,
        remove_unused_columns=False, **config.loss_settings())
    return Trainer(model=model, args=args, train_dataset=to_dataset(train, tokenizer, config.max_source_length),
                   eval_dataset=to_dataset(held, tokenizer, config.max_source_length) if held else None,
                   processing_class=tokenizer)


def held_out_metrics(trainer, held: list[dict]) -> dict:
    """Preference accuracy and margin of the trained adapter on held-out votes (trl's eval rewards)."""
    if not held:
        return {}
    found = trainer.evaluate()
    keep = {"eval_rewards/accuracies": "accuracy", "eval_rewards/margins": "margin", "eval_loss": "loss"}
    return {"n_pairs": len(held), **{name: round(float(found[key]), 4) for key, name in keep.items() if key in found}}


# ------------------------------------------------------------------------------------------------ evaluation




def generate_both(model, tokenizer, rows: list[dict], policy_folder: Path, settings: GenerationSettings, scorer,
                  batch_size: int) -> tuple[list[str], dict]:
    """Greedy summaries from the trained adapter and its start (one base copy, mixed-adapter batches) and the paired
    metrics; returns (trained outputs, extra metrics)."""
    if START not in model.peft_config:
        modeling.attach_adapter(model, policy_folder, START)
    model.eval()
    texts = [prompts.zero_shot(r["dialogue"]) for r in rows]
    outputs = generate(model, tokenizer, texts + texts, settings, adapter_names=[START] * len(rows) + [TRAINED] *
                       len(rows), batch_size=batch_size, progress=True)
    start, trained = outputs[: len(rows)], outputs[len(rows):]
    references = [r["references"] for r in rows]
    extra = evaluation.paired_vs_start(start, trained, scorer.score(start), scorer.score(trained),
                            scoring.rouge_per_example(start, references),
                            scoring.rouge_per_example(trained, references))
    return trained, extra


def card_for(config: PreferenceRecipe, base_ref: str, metrics: dict, params: dict) -> str:
    card = store.model_card(config.output, base_model=base_ref, method=config.method, dataset=config.preferences,
                            metrics=metrics["metrics"], training=metrics["training"], params=params,
                            description=f"LoRA adapter trained with {config.loss.upper()} on the preference pairs "
                                        f"`{config.preferences}`, started from `{config.policy}`.")
    return card.replace("library_name: transformers", "library_name: peft", 1)  # an adapter, whatever the method


def main(argv: list[str] | None = None) -> dict:
    """setup (pairs, evaluation rows, checkpoint folder, policy) -> train -> held-out preference accuracy -> save and
    record -> evaluate against the start adapter and publish."""
    config = options.parse(PreferenceRecipe, argv, description=__doc__)
    if config.method not in results.METHODS:
        raise ConfigError(f"loss: results.METHODS has no {config.method!r} yet, so its record could not be written")
    pairs, where = load_preference_pairs(config.preferences)
    watch = common.start(config, config.method, config.policy, where)
    eval_rows = common.load_rows(config.dataset, config.eval_split, limit=config.eval_limit,
                                 fields="dataset / eval_split")
    scorer = toxicity.load_scorer(config.toxicity)
    train, held = split_votes(pairs, config.held_out, config.seed)
    policy_adapter(config)  # a wrong start fails here, before a checkpoint folder is made
    texts = [f"{p['prompt']}\n{p['chosen']}\n{p['rejected']}" for p in pairs]
    ckpt, run_id = common.start_checkpoints(config, config.method, NOT_TRAINING, texts)
    model, tokenizer, base_ref, policy_folder = load_policy(config, common.device())
    trainer = trainer_for(config, model, tokenizer, train, held, ckpt)
    with generation.training_with_copy_bias(model, tokenizer.pad_token_id):  # trl's losses read the biased logits
        last = common.fit(trainer, ckpt, config.method, run_id)
        held_metrics = held_out_metrics(trainer, held)  # every process: a collective evaluation under torchrun
    if not common.leave(trainer):
        return {}  # data-parallel workers are done; the main process evaluates and publishes once
    final = common.save_final(trainer.model, tokenizer, ckpt, config.save_dtype, base_ref=base_ref)
    counted = modeling.count_parameters(trainer.model)
    params = {k: counted[k] for k in ("total", "trainable", "trainable_share")}
    training = common.training_record(
        config, trainer, config.method, watch=watch, run_id=run_id, resumed_from=last, loss=config.loss,
        **config.loss_settings(), policy_start=config.policy, preferences=where, n_pairs=len(train),
        n_votes=len({p["vote_id"] for p in train}), held_out=held_metrics,
        samples_seen=trainer.state.global_step * config.batch_size, precision=config.precision)
    return finish(config, trainer.model, tokenizer, base_ref, policy_folder, eval_rows, scorer=scorer, params=params,
                  training=training, watch=watch, run_id=run_id, ckpt=ckpt, final=final)


def finish(config: PreferenceRecipe, model, tokenizer, base_ref: str, policy_folder: Path, eval_rows: list[dict], *,
           scorer, params: dict, training: dict, watch: common.Stopwatch, run_id: str, ckpt: Path, final: Path) -> dict:
    """Evaluate the trained adapter against its start on the evaluation rows, publish and record."""
    settings = GenerationSettings(max_new_tokens=config.max_new_tokens)

    def evaluate() -> dict:
        outputs, extra = generate_both(model, tokenizer, eval_rows, policy_folder, settings, scorer,
                                       config.eval_batch_size)
        run = watch.run_info(model_id=config.output, method=config.method, base_model=base_ref,
                             dataset=config.dataset, split=config.eval_split, params=params, training=training,
                             run_id=run_id)
        return evaluation.evaluate(model, tokenizer, eval_rows, run, settings=settings, scorer=scorer,
                                   batch_size=config.eval_batch_size, extra_metrics=extra, predictions=outputs,
                                   write=False)

    metrics = common.finish_run(run_id=run_id, ckpt=ckpt, folder=final, output=config.output,
                                push_to_hub=config.push_to_hub, evaluate=evaluate,
                                card=lambda m: card_for(config, base_ref, m, params))
    print(evaluation.format_table([metrics]))
    m = metrics["metrics"]
    for key in ("toxicity", "rouge1", "rouge2", "length_words"):
        d = m[f"{key}_diff_vs_start"]
        print(f"[{config.method}] {key}: {m[f'{key}_start']['mean']:.4f} -> {m[key]['mean']:.4f} (paired diff "
              f"{d['mean']:+.4f}, 95% CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], n={d['n']})")
    print(f"[{config.method}] published {config.output} revision {metrics['revision']} (run {run_id})")
    return metrics


if __name__ == "__main__":
    sys.exit(common.cli(main))
