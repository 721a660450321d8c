"""How far a model is from restating a dialogue: the diagnosis behind issue 14 (real dialogues), in one command.

    python -m trainers.restate_probe --model demo/flan-t5-demo-full --dataset dialogsum-local --split dev --limit 60
    python -m trainers.restate_probe --model demo/flan-t5-demo-lora --dataset demo --split test

The demo family's references for open dialogues are `baselines.restate` of the dialogue, a function of the text
alone: a model that has learned it can restate any dialogue, and one that has not shows where it fails. On the
split's rows (demo: only those whose reference is the restate rule's), with the rule's output as the target:

- teacher-forced restate accuracy: given the rule's summary so far, how often the next token is the rule's (argmax),
  over the tokens after the opening phrase. It measures copying once the model is on the right track;
- first content token: how often the model's first token after the opening phrase is the rule's, teacher-forced.
  It measures finding where to start: skipping greetings and fillers, and whose words come first;
- greedy fidelity: ROUGE-1 of the greedy summary against the rule's output, and how many summaries are degenerate
  (`scoring.is_degenerate`) or identical to another one;
- with references (DialogSum), ROUGE-1/2 of the greedy summaries against them (best of the references).

With `--readback` (for a pretrained base, whose reconstruction objective is copying): how often the model, reading a
64-token window of each dialogue and given the window so far, predicts its next token, split by how often the token
before it occurs in the window. A lookup keyed on that one token can only pick the right place when it occurs once;
this is what `modeling.add_copy_prior`'s `context` is for.

Nothing is written: this is a probe, the run records are `trainers.evaluate`'s.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
import sys

import torch

from trainers import common, options
from trainers.evaluate import load_for_eval
from trainers.options import arg
from workbench import baselines, evaluation, scoring
from workbench.generation import GenerationSettings, generate, model_input_limit


@dataclasses.dataclass
class ProbeRecipe(options.SplitData):
    model: str = arg("demo/flan-t5-demo-full", "model or LoRA adapter (store name, Hub id or folder)")
    revision: str = arg("main", "its revision")
    base: str | None = arg(None, "base model when --model is an adapter (None = the one it names)")
    batch_size: int = arg(16, "generation batch size", positive=True)
    max_new_tokens: int = arg(64, "summary length limit", positive=True)
    readback: bool = arg(False, "also measure how well the model reads windows of the dialogues back (for a base)")


def restate_rows(rows: list[dict]) -> tuple[list[dict], bool]:
    """The rows the probe reads, and whether their references are the rule's: of the demo corpus only the open
    dialogues, whose reference is the restate rule (a scenario's is written otherwise); every row of a dataset with
    human references (DialogSum), whose references are then scored too."""
    ruled = [r for r in rows if r.get("summary", r.get("summary1")) == baselines.restate(r["dialogue"])]
    return (ruled, True) if ruled else (rows, False)


@torch.inference_mode()
def teacher_forced(model, tokenizer, prompt_texts: list[str], targets: list[str]) -> dict:
    """Next-token argmax accuracy on `targets` after the opening phrase, and on their first content token."""
    skip = len(tokenizer(baselines.OPENING.strip()).input_ids) - 1  # the phrase's tokens, without </s>
    limit = model_input_limit(tokenizer)  # the input as generation reads it
    right = total = first = 0
    device = next(model.parameters()).device
    for prompt, target in zip(prompt_texts, targets):
        enc = tokenizer(prompt, truncation=True, max_length=limit, return_tensors="pt").to(device)
        labels = tokenizer(target, return_tensors="pt").input_ids.to(device)
        hits = (model(**enc, labels=labels).logits[0].argmax(-1) == labels[0])[skip:-1]  # not </s>
        if len(hits):
            right, total, first = right + int(hits.sum()), total + len(hits), first + int(hits[0])
    return {"accuracy": right / total if total else None, "first_token": first / len(targets) if targets else None,
            "tokens": total}


@torch.inference_mode()
def readback(model, tokenizer, dialogues: list[str], window: int = 64) -> dict:
    """Teacher-forced accuracy of copying the first two `window`-token windows of each dialogue (input = target), in
    all and by how often the previous token occurs in the window: "once", "2-3", "4+"."""
    device = next(model.parameters()).device
    counts = collections.defaultdict(lambda: [0, 0])
    for dialogue in dialogues:
        ids = tokenizer(dialogue).input_ids[:-1]
        for start in (0, window):
            piece = ids[start: start + window]
            if len(piece) < window // 2:
                continue
            x = torch.tensor([piece + [tokenizer.eos_token_id]], device=device)
            hits = (model(input_ids=x, labels=x).logits[0].argmax(-1) == x[0]).tolist()
            seen = collections.Counter(piece)
            for i in range(1, len(piece)):
                n = seen[piece[i - 1]]
                key = "once" if n == 1 else "2-3" if n <= 3 else "4+"
                counts[key][0] += hits[i]
                counts[key][1] += 1
    right, total = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    return {"accuracy": right / total if total else None, "tokens": total,
            "by_previous_token": {k: {"accuracy": c[0] / c[1], "tokens": c[1]} for k, c in sorted(counts.items())}}


def probe(model, tokenizer, rows: list[dict], *, references: bool = True, batch_size: int = 16,
          max_new_tokens: int = 64) -> dict:
    """The probe's figures for `rows` (see the module docstring); ROUGE against their references if `references`."""
    model.eval()
    prompt_texts = evaluation.eval_prompts(rows)  # what trainers.evaluate generates from
    rule = [baselines.restate(r["dialogue"]) for r in rows]
    forced = teacher_forced(model, tokenizer, prompt_texts, rule)
    plain = GenerationSettings(max_new_tokens=max_new_tokens, no_repeat_ngram_size=0)  # how far greedy drifts alone
    greedy = generate(model, tokenizer, prompt_texts, plain, batch_size=batch_size)
    fidelity = scoring.rouge_per_example(greedy, [[t] for t in rule])
    out = {"n": len(rows), "teacher_forced_accuracy": forced["accuracy"], "first_content_token": forced["first_token"],
           "greedy_fidelity_rouge1": statistics.fmean(f["rouge1"] for f in fidelity),
           "degenerate": sum(scoring.is_degenerate(g) for g in greedy), "distinct": len(set(greedy)),
           "examples": [{"rule": t, "model": g} for t, g in list(zip(rule, greedy))[:3]]}
    refs = [[r[k] for k in sorted(r) if k.startswith("summary") and r[k]] for r in rows]
    if references and all(refs):
        scores = scoring.rouge_per_example(greedy, refs)
        out.update(rouge1=statistics.fmean(s["rouge1"] for s in scores),
                   rouge2=statistics.fmean(s["rouge2"] for s in scores))
    return out


def main(argv: list[str] | None = None) -> dict:
    config = options.parse(ProbeRecipe, argv, description=__doc__)
    rows, ruled = restate_rows(common.load_rows(config.dataset, config.split, fields="dataset / split"))
    rows = rows[: config.limit] if config.limit else rows
    model, tokenizer, _ = load_for_eval(config.model, config.revision, config.base, "fp32")
    report = probe(model, tokenizer, rows, references=not ruled, batch_size=config.batch_size,
                   max_new_tokens=config.max_new_tokens)
    print(f"[restate-probe] {config.model} on {config.dataset}/{config.split}, {report['n']} dialogues:")
    print(f"  teacher-forced restate accuracy {report['teacher_forced_accuracy']:.3f}; first content token right "
          f"{report['first_content_token']:.3f}")
    print(f"  greedy: fidelity to the rule (ROUGE-1) {report['greedy_fidelity_rouge1']:.3f}, {report['distinct']} "
          f"distinct, {report['degenerate']} degenerate"
          + (f"; ROUGE-1 {report['rouge1']:.3f}, ROUGE-2 {report['rouge2']:.3f} against the references"
             if "rouge1" in report else ""))
    for example in report["examples"]:
        print(f"  rule:  {example['rule'][:160]}\n  model: {example['model'][:160]}")
    if config.readback:
        report["readback"] = back = readback(model, tokenizer, [r["dialogue"] for r in rows])
        split = back["by_previous_token"].items()
        print(f"  read-back of 64-token windows {back['accuracy']:.3f}; by how often the previous token occurs: "
              + ", ".join(f"{k} {v['accuracy']:.3f} ({v['tokens']} tokens)" for k, v in split))
    return report


if __name__ == "__main__":
    sys.exit(common.cli(main))
