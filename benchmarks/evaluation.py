"""Batch evaluation: the four models over N DialogSum test dialogues (a seeded random sample, real lengths).

naive  per-example loop in fp32, model after model (how the reference notebooks evaluated).
ours   the app's batch path, `ModelSet.generate_slots` (what the Toxicity tab's sample run calls): base, LoRA and
       PPO in one mixed-adapter `workbench.generation.generate` call, the full model in another; batched,
       length-sorted, in the best precision the hardware has.

Greedy, 64 new tokens, `min_new_tokens=64` on both sides so both generate exactly the same number of tokens
(random weights would otherwise stop at different places). Outputs are compared string by string, and ROUGE-1
against the references per slot must stay within 0.005 of the fp32 result.

Random weights write noise, so on them "ROUGE holds" says little. The check that matters runs on the trained demo
family (store/, its whole test split of 240 dialogues, natural lengths): fp32 vs what the app serves (auto), and for
comparison plain bf16 and torch.ao dynamic int8.
"""

from __future__ import annotations

from statistics import median

from benchmarks.common import Goal, Result, agreement, interleaved, naive_generate
from benchmarks.family import load_modelset, load_naive
from workbench import data, prompts
from workbench.generation import GenerationSettings
from workbench.modelset import DEFAULT_CONFIG, SLOTS

GOAL = Goal("naive / ours (time)", ">=", 6)
ROUGE_TOLERANCE = 0.005


def run(bench) -> Result:
    rows = bench.family.sample(bench.n)
    texts = [prompts.zero_shot(r["dialogue"]) for r in rows]
    settings = GenerationSettings(max_new_tokens=64, min_new_tokens=64)
    naive_models, ours = bench.naive_models(), bench.modelset()
    outputs: dict[str, dict] = {}

    def naive():
        outputs["naive"] = {s: [naive_generate(m, t, p, settings) for p in texts] for s, (m, t) in naive_models.items()}

    def mine():
        outputs["ours"] = ours.generate_slots(SLOTS, texts, settings)

    times = interleaved({"naive": naive, "ours": mine}, bench.reps(2))
    t_naive, t_ours = median(times["naive"]), median(times["ours"])
    random_check = agreement(outputs["naive"], outputs["ours"], rows)
    rows_out = [{"variant": name, "median_s": round(median(t), 2), "samples_s": [round(x, 2) for x in t],
                 "seconds_per_dialogue_per_model": round(median(t) / (len(texts) * len(SLOTS)), 3)}
                for name, t in times.items()]
    demo = demo_quality(bench.n_demo)
    checks = {}  # random weights write noise: their agreement is reported below, not judged
    differ = random_check["outputs"] - random_check["identical"]
    notes = [f"random-weight family: {differ}/{random_check['outputs']} outputs differ from fp32 per-example, "
             f"max |ΔROUGE-1| {random_check['max_abs_rouge1_delta']:.4f} (noise in, noise out)"]
    if demo.get("available"):
        ours_demo = demo["variants"]["auto"]
        checks["ROUGE-1 within 0.005 (trained demo family)"] = ours_demo["max_abs_rouge1_delta"] <= ROUGE_TOLERANCE
        notes.append(f"trained demo family, {demo['n']} demo test dialogues, slots {','.join(demo['slots'])}"
                     f" (unavailable: {', '.join(demo['unavailable']) or 'none'}); fp32 batched vs per-example: "
                     f"{demo['fp32_batched_vs_per_example_differ']} differ")
        for variant, v in demo["variants"].items():
            deltas = ", ".join(f"{s} {d['rouge1_delta']:+.4f}" for s, d in v["per_slot"].items())
            holds = v["max_abs_rouge1_delta"] <= ROUGE_TOLERANCE
            notes.append(f"  {variant:13} ({v['precision']}): {v['outputs'] - v['identical']}/{v['outputs']} outputs "
                         f"differ from fp32, ΔROUGE-1 {deltas} -> {'holds' if holds else 'DOES NOT hold'}")
    else:
        notes.append(f"trained demo family: skipped ({demo.get('reason')})")
    return Result("evaluate", f"Batch evaluation: 4 models × {len(texts)} dialogues", "s", t_naive, t_ours,
                  t_naive / t_ours, GOAL, rows=rows_out, checks=checks, notes=notes,
                  details={"n": len(texts), "settings": settings.as_dict(), "ours_precision": str(ours.precision),
                           "input_tokens": [len(ids) for ids in bench.family.tokenizer(texts).input_ids],
                           "random_weights": random_check, "demo_family": demo})


def demo_quality(n: int, variants=None) -> dict:
    """Reduced-precision outputs vs fp32 on the trained demo family (configs/models/demo.yaml, store/), greedy with
    natural lengths over `n` demo test dialogues. The reference is the fp32 ModelSet, batched; that it equals the
    per-example fp32 loop is checked on the first 32 dialogues. `auto` is what the app serves; bf16 only where the
    CPU has it natively (emulated, it would take minutes per dialogue)."""
    from workbench import modeling

    variants = variants or ("auto", *(("bf16",) if modeling.cpu_has_bf16() else ()), "int8-dynamic")
    try:
        rows = data.load_dialogues(data.DEMO, "test", limit=n)
        reference_set = _demo_set("fp32")
    except Exception as err:  # noqa: BLE001 - the demo family may be missing or mid-rebuild
        return {"available": False, "reason": str(err).splitlines()[0][:200]}
    slots = reference_set.available
    missing = {s: reference_set.status[s].error for s in SLOTS if s not in slots}
    if not slots:
        return {"available": False, "reason": f"no demo slot loads: {missing}"}
    texts = [prompts.zero_shot(r["dialogue"]) for r in rows]
    settings = GenerationSettings(max_new_tokens=64)
    reference = {s: reference_set.generate_batch(s, texts, settings) for s in slots}
    loop = load_naive({s: reference_set.status[s].folder for s in slots})
    per_example = {s: [naive_generate(m, t, p, settings) for p in texts[:32]] for s, (m, t) in loop.items()}
    batching_changes = sum(a != b for s in slots for a, b in zip(per_example[s], reference[s]))
    out = {"available": True, "n": len(rows), "slots": slots, "unavailable": missing,
           "fp32_batched_vs_per_example_differ": batching_changes, "variants": {}}
    for variant in variants:
        models = _demo_set(variant)
        candidate = models.generate_slots(slots, texts, settings)
        label = str(models.precision)
        out["variants"][variant] = {"precision": label, **agreement(reference, candidate, rows)}
    return out


def _demo_set(variant: str):
    return load_modelset(DEFAULT_CONFIG, None if variant == "auto" else variant)
