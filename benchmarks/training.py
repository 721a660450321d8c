"""Training throughput (real tokens per second) for full and LoRA fine-tuning of the FLAN-T5-base architecture.

Both paths train the same examples (DialogSum dev rows, real lengths) built with the trainers' own pieces:
`trainers.common.tokenize_pairs` (512 / 128 token limits, as trainers/sft.py), `DataCollatorForSeq2Seq` with
sft.py's settings, the optimizer `Seq2SeqTrainer` builds from the same training arguments, gradient clipping at 1.0
(the Trainer's default), and for LoRA the LoRA recipe's adapter settings (r=32, alpha=32, q,v, dropout 0.05).

naive  fixed padding: every batch padded to 512 source and 128 target tokens, random order, fp32.
ours   what sft.py asks of Seq2SeqTrainer with `--group-by-length` (the setting for DialogSum; it is off by default
       because on the demo corpus length gives the topic away, see sft.py): dynamic padding (to a multiple of 8),
       the LengthGroupedSampler, bf16 autocast where the CPU has it (`trainers.common.use_bf16("auto")`).

The two paths alternate steps on ONE model and optimizer (speed does not depend on the weights' values, and one
copy of a 248M-parameter model with AdamW state is 4 GB). Throughput = non-padding source + target tokens over the
wall time of the measured steps; each path first takes one warm-up step. Batch size 4 (sft.py's 16 would take
minutes per naive step on two cores; dynamic padding helps more, not less, with larger random batches).
"""

from __future__ import annotations

import contextlib
import gc
import tempfile

import torch

from benchmarks.common import Goal, Result, interleaved
from benchmarks.family import dialogsum, use_store
from workbench import modeling

GOAL = Goal("ours / naive (tokens/s)", ">=", 1.5)
BATCH_SIZE = 4
MAX_SOURCE, MAX_TARGET = 512, 128


def run(bench) -> Result:
    steps = bench.reps(3)
    per_method = {}
    for method in ("full", "lora"):
        per_method[method] = _throughput(bench, method, steps)
        gc.collect()  # the model and optimizer of one method are freed before the next one loads
    naive = sum(m["naive_tokens_per_s"] for m in per_method.values()) / len(per_method)
    ours = sum(m["ours_tokens_per_s"] for m in per_method.values()) / len(per_method)
    ratios = {method: m["ratio"] for method, m in per_method.items()}
    worst = min(ratios, key=ratios.get)
    rows = [{"variant": f"{method}, {path}", "tokens_per_s": round(m[f"{path}_tokens_per_s"], 1),
             "seconds_per_step": [round(x, 2) for x in m[f"{path}_step_s"]]}
            for method, m in per_method.items() for path in ("naive", "ours")]
    notes = [f"{method}: {m['naive_tokens_per_s']:,.0f} -> {m['ours_tokens_per_s']:,.0f} tokens/s "
             f"({m['ratio']:.2f}×)" for method, m in per_method.items()]
    notes.append(f"headline = the lower of the two ratios ({worst}); naive/ours columns = mean tokens/s of both")
    return Result("training", "Training throughput: full + LoRA", "tokens/s", naive, ours, ratios[worst], GOAL,
                  rows=rows, notes=notes, details={"batch_size": BATCH_SIZE, "measured_steps": steps,
                                                   "per_method": per_method})


def _throughput(bench, method: str, steps: int) -> dict:
    """Tokens per second of the naive and our training step for `method`, on the same examples, interleaved."""
    model, params, optimizer, bf16 = _trainable(bench, method)
    warm, naive_batches, ours_batches = _batches(bench.family.tokenizer, model, steps)

    def step(batch, autocast: bool):
        context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with context:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(_pad_fixed(warm), autocast=False)  # warm-up steps on examples outside the measured ones
    step(warm, autocast=bf16)
    todo = {"naive": iter(naive_batches), "ours": iter(ours_batches)}
    times = interleaved({"naive": lambda: step(next(todo["naive"]), False),
                         "ours": lambda: step(next(todo["ours"]), bf16)}, steps)
    tokens = {path: sum(_real_tokens(b) for b in batches) for path, batches in
              (("naive", naive_batches), ("ours", ours_batches))}
    padded = {path: sum(b["input_ids"].numel() + b["labels"].numel() for b in batches) for path, batches in
              (("naive", naive_batches), ("ours", ours_batches))}
    assert tokens["naive"] == tokens["ours"], "both paths must train the same examples"
    out = {"bf16_autocast": bf16, "trainable_parameters": sum(p.numel() for p in params),
           "real_tokens": tokens["ours"], "padded_tokens": padded}
    for path in ("naive", "ours"):
        out[f"{path}_step_s"] = times[path]
        out[f"{path}_tokens_per_s"] = tokens[path] / sum(times[path])
    out["ratio"] = out["ours_tokens_per_s"] / out["naive_tokens_per_s"]
    return out


def _trainable(bench, method: str):
    """The base model prepared as the trainer of `method` prepares it, its trainable parameters, the optimizer the
    HF Trainer would build for them, and whether steps autocast to bf16 (as the trainers' "auto" precision)."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from trainers import common, full, lora

    with use_store(bench.family.store_dir):
        model = modeling.load_model(bench.family.folder("base"), dtype="fp32", device="cpu")
    if method == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora.lora_settings(lora.LoraRecipe()))
    else:
        model = full.prepare(model, full.FullRecipe())
    model.train()
    bf16 = common.use_bf16("auto")
    with tempfile.TemporaryDirectory() as tmp:
        args = Seq2SeqTrainingArguments(output_dir=tmp, per_device_train_batch_size=BATCH_SIZE, learning_rate=1e-4,
                                        bf16=bf16, use_cpu=True, report_to=[])
        optimizer_cls, optimizer_kwargs = Seq2SeqTrainer.get_optimizer_cls_and_kwargs(args, model)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, params, optimizer_cls(params, **optimizer_kwargs), bf16


def _batches(tokenizer, model, steps: int):
    """A warm-up batch, then the same `steps` batches of DialogSum dev examples twice: shuffled and padded to the
    fixed maximum shapes (naive), and length-grouped, padded per batch to a multiple of 8 (ours)."""
    from transformers import DataCollatorForSeq2Seq
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from trainers import common

    rows = dialogsum("dev")
    generator = torch.Generator().manual_seed(0)
    pool = [rows[i] for i in torch.randperm(len(rows), generator=generator)[: BATCH_SIZE * (steps + 1)].tolist()]
    dataset = common.tokenize_pairs(tokenizer, pool, MAX_SOURCE, MAX_TARGET)
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=8)
    features = [{k: dataset[i][k] for k in ("input_ids", "attention_mask", "labels")} for i in range(len(dataset))]
    warm, features, lengths = features[:BATCH_SIZE], features[BATCH_SIZE:], dataset["length"][BATCH_SIZE:]
    grouped = list(LengthGroupedSampler(BATCH_SIZE, lengths=lengths, generator=generator))
    shuffled = torch.randperm(len(features), generator=generator).tolist()
    ours = [collate([features[i] for i in grouped[b : b + BATCH_SIZE]]) for b in range(0, len(grouped), BATCH_SIZE)]
    naive = [_pad_fixed(collate([features[i] for i in shuffled[b : b + BATCH_SIZE]]))
             for b in range(0, len(shuffled), BATCH_SIZE)]
    return collate(warm), naive, ours


def _pad_fixed(batch: dict) -> dict:
    """Right-pad a collated batch to the fixed 512/128 shapes of a pad-to-max pipeline (padding masked as usual)."""
    pads = {"input_ids": (MAX_SOURCE, 0), "attention_mask": (MAX_SOURCE, 0), "labels": (MAX_TARGET, -100),
            "decoder_input_ids": (MAX_TARGET, 0)}
    return {k: torch.nn.functional.pad(v, (0, pads[k][0] - v.shape[1]), value=pads[k][1]) if k in pads else v
            for k, v in batch.items()}


def _real_tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
