"""Training steps of the demo family with torch's CPU dropout against workbench.dropout's cheap masks.

    .venv/bin/python -m benchmarks.dropout                 # 12 measured steps of each, full and LoRA
    .venv/bin/python -m benchmarks.dropout --steps 4

`make demo` spends most of its time in training steps of 8M-parameter T5s, and on a CPU torch draws a dropout mask one
random number per element (its vectorised generator serves float32 on Intel CPUs only), attention weights included:
batch x heads x length x length per layer. Both variants here train the same batches of the committed demo family as
the recipes do (the demo base, batch 16 of demo/train in one shuffled order, `DataCollatorForSeq2Seq` padding,
bf16 autocast where the CPU has it, the copy-biased loss of trainers/sft.py, gradient clipping at 1.0, AdamW), on one
model per method, steps alternating between the variants (`interleaved`; speed does not depend on the weights'
values). Output: the median seconds per step of each, their ratio, and results/benchmarks/dropout.json with the CPU.
"""

from __future__ import annotations

import os

for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from benchmarks.common import OUT_DIR, interleaved, machine  # noqa: E402
from workbench import data, dropout, generation, modeling, store  # noqa: E402
from workbench.io import atomic_write_json  # noqa: E402

BASE = "demo/flan-t5-demo-base"
BATCH_SIZE = 16


def batches(tokenizer, model, count: int) -> list[dict]:
    """`count` batches of demo/train as the SFT recipes collate them (one shuffled order, seed 0)."""
    from transformers import DataCollatorForSeq2Seq

    from trainers import common

    rows = data.load_dialogues("demo", "train")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[: BATCH_SIZE * count].tolist()
    dataset = common.tokenize_pairs(tokenizer, [rows[i] for i in order], 512, 128)
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    features = [{k: dataset[i][k] for k in ("input_ids", "attention_mask", "labels")} for i in range(len(dataset))]
    return [collate(features[b : b + BATCH_SIZE]) for b in range(0, len(features), BATCH_SIZE)]


def measure(method: str, steps: int) -> dict:
    from trainers import common

    folder = store.LocalStore().resolve(BASE)
    model, tokenizer = modeling.load_model(folder), modeling.load_tokenizer(folder)
    if method == "lora":
        from peft import get_peft_model

        from trainers import lora

        model = get_peft_model(model, lora.lora_settings(lora.LoraRecipe()))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    bf16 = common.use_bf16("auto")
    bias, pad = generation.model_copy_bias(model), tokenizer.pad_token_id
    todo = iter(batches(tokenizer, model, 2 * steps + 2))

    def step(cheap: bool) -> None:
        batch = next(todo)
        labels = batch.pop("labels")
        with dropout.cpu_dropout(model) if cheap else contextlib.nullcontext():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(**batch).logits
            logits = generation.copy_biased_logits(logits.float(), batch["input_ids"], batch["decoder_input_ids"],
                                                   bias, pad, generation.model_copy_retell(model),
                                                   generation.model_copy_span(model))
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(False), step(True)  # warm-up
    times = interleaved({"torch": lambda: step(False), "cheap": lambda: step(True)}, steps)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds_per_step": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "median_s": {k: round(v, 4) for k, v in medians.items()},
            "ratio": round(medians["torch"] / medians["cheap"], 3), "bf16_autocast": bf16}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dropout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="measured steps of each variant per method")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "dropout.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be positive")
    torch.manual_seed(0)
    result = {method: measure(method, args.steps) for method in ("full", "lora")}
    for method, r in result.items():
        print(f"{method:5} torch dropout {r['median_s']['torch'] * 1000:4.0f} ms/step, cheap masks "
              f"{r['median_s']['cheap'] * 1000:4.0f} ms/step: {r['ratio']:.2f}x")
    atomic_write_json(args.out, {"measure": "dropout", "batch_size": BATCH_SIZE, "steps": args.steps,
                                 "model": BASE, "per_method": result, "machine": machine()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
