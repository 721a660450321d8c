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

Where ours is fp32 (AVX2-only CPUs), the same ModelSet with its decoding steps on the ordinary BLAS product
(`fp32-plain`, as before `modeling.DecodingLinear`) is timed beside it.

Where the optional ctranslate2 package is installed, the same ModelSet with `engine: ctranslate2` in int8 and fp32
(`ct2-int8`, `ct2-fp32`) is timed interleaved with naive and ours, checked on the trained demo family like the torch
variants, and its peak memory read in a fresh process per variant; the result's details.engine applies issue 18's
keep-rule (>= 1.5x faster than ours at ROUGE-1 within 0.005).
"""

from __future__ import annotations

import time
from pathlib import Path
from statistics import median

from benchmarks import why
from benchmarks.common import Goal, Result, agreement, interleaved, naive_generate, rss_mb
from benchmarks.compare import CT2_VARIANTS, engine_label
from benchmarks.family import PLAIN_FP32, ct2_available, load_modelset, load_naive
from workbench import data, prompts
from workbench.generation import GenerationSettings
from workbench.modelset import DEFAULT_CONFIG, SLOTS

GOAL = Goal("naive / ours (time)", ">=", 6)
ROUGE_TOLERANCE = 0.005
KEEP_SPEEDUP = 1.5  # issue 18: the CTranslate2 engine stays only if it is this much faster than ours
# What was tried against a miss, with what it gave (docs/PERFORMANCE.md), by the precision ours serves
TRIED = {
    "fp32": [
        "fp32 decoding steps on oneDNN (modeling.DecodingLinear): 2.89× -> 3.42× the naive path under the AVX2 cap",
        "torch.ao dynamic int8 on AVX2: 80.1% of demo test outputs identical to fp32, ROUGE-1 -0.006 (bars: 90%, "
        "0.005)",
        "the optional CTranslate2 engine in int8: 5.35× the naive path under the AVX2 cap (6.16× on an AVX512-BF16 "
        "machine), 82% of outputs identical to fp32",
    ],
    "reduced": [
        "int8 weights with bf16 compute, batched, length-sorted, mixed-adapter: 4.38× on a quiet AVX512-BF16 machine",
        "attention's batched matmuls in fp32 inside the bf16 model: at decoding shapes (12 heads × 12 rows, 250 keys) "
        "fp32 took 151 µs against bf16's 189 for q·k but 412 against 350 for the weighted sum, before any cast: "
        "no clear gain, not pursued (2026-12-05)",
        "the optional CTranslate2 engine in int8: 6.16×, 82% of outputs identical to fp32 (ROUGE-1 within 0.0035)",
    ],
}


def run(bench) -> Result:
    rows = bench.family.sample(bench.n)
    texts = [prompts.zero_shot(r["dialogue"]) for r in rows]
    settings = GenerationSettings(max_new_tokens=64, min_new_tokens=64)
    naive_models, ours = bench.naive_models(), bench.modelset()
    sets = {"ours": ours, **({v: bench.modelset(v) for v in CT2_VARIANTS} if ct2_available() else {})}
    if ours.precision.key == "fp32" and not bench.quick:  # where ours is fp32: what its decoding layers gain
        sets[PLAIN_FP32] = bench.modelset(PLAIN_FP32)
    outputs: dict[str, dict] = {}

    def naive():
        outputs["naive"] = {s: [naive_generate(m, t, p, settings) for p in texts] for s, (m, t) in naive_models.items()}

    def served(name):
        outputs[name] = sets[name].generate_slots(SLOTS, texts, settings)

    # First calls pay one-off costs (allocator, kernel selection per shape): unwarmed, ours' first of four
    # repetitions took 40 s and the next three 14-16 s, which alone made a variant look 1.7x faster than ours.
    warm = GenerationSettings(max_new_tokens=2)
    for model, tokenizer in naive_models.values():
        naive_generate(model, tokenizer, texts[0], warm)
    for models in sets.values():
        models.generate_slots(SLOTS, texts, warm)
    variants = {"naive": naive, **{name: (lambda name=name: served(name)) for name in sets}}
    times = interleaved(variants, bench.reps(2))
    t_naive, t_ours = median(times["naive"]), median(times["ours"])
    random_check = agreement(outputs["naive"], outputs["ours"], rows)
    rows_out = [{"variant": name, "engine": engine_label(sets[name]) if name in sets else "fp32, four copies",
                 "median_s": round(median(t), 2), "samples_s": [round(x, 2) for x in t],
                 "speedup_vs_naive": round(t_naive / median(t), 2),
                 "seconds_per_dialogue_per_model": round(median(t) / (len(texts) * len(SLOTS)), 3)}
                for name, t in times.items()]
    demo = demo_quality(bench.n_demo, with_engine=len(sets) > 1)
    checks = {}  # random weights write noise: their agreement is reported below, not judged
    differ = random_check["outputs"] - random_check["identical"]
    notes = [f"random-weight family: {differ}/{random_check['outputs']} outputs differ from fp32 per-example, "
             f"max |ΔROUGE-1| {random_check['max_abs_rouge1_delta']:.4f} (noise in, noise out)", *demo_notes(demo)]
    if demo.get("available"):
        checks["ROUGE-1 within 0.005 (trained demo family)"] = \
            demo["variants"]["auto"]["max_abs_rouge1_delta"] <= ROUGE_TOLERANCE
    details = {"n": len(texts), "settings": settings.as_dict(), "ours_precision": str(ours.precision),
               "input_tokens": [len(ids) for ids in bench.family.tokenizer(texts).input_ids],
               "random_weights": random_check, "demo_family": demo}
    if len(sets) > 1:
        memory = {name: rss_probe(name, bench, texts) for name in sets}
        details["engine"] = engine_verdict(times, demo, memory)
        notes += engine_notes(details["engine"])
    result = Result("evaluate", f"Batch evaluation: 4 models × {len(texts)} dialogues", "s", t_naive, t_ours,
                    t_naive / t_ours, GOAL, rows=rows_out, checks=checks, notes=notes, details=details)
    if result.passed is False:
        result.why = why.explain(result, engine_label(ours), ours, lambda: served("ours"), TRIED)
    return result


def demo_notes(demo: dict) -> list[str]:
    """The trained demo family's agreement lines: per variant, outputs that differ from fp32 and ΔROUGE-1 per slot."""
    if not demo.get("available"):
        return [f"trained demo family: skipped ({demo.get('reason')})"]
    notes = [f"trained demo family, {demo['n']} demo test dialogues, slots {','.join(demo['slots'])}"
             f" (unavailable: {', '.join(demo['unavailable']) or 'none'}); fp32 batched vs per-example: "
             f"{demo['fp32_batched_vs_per_example_differ']} differ; fp32 reference {demo['fp32_seconds']} s"]
    for variant, v in demo["variants"].items():
        deltas = ", ".join(f"{s} {d['rouge1_delta']:+.4f}" for s, d in v["per_slot"].items())
        holds = v["max_abs_rouge1_delta"] <= ROUGE_TOLERANCE
        notes.append(f"  {variant:13} ({v['precision']}, {v['seconds']} s): {v['outputs'] - v['identical']}/"
                     f"{v['outputs']} outputs differ from fp32, ΔROUGE-1 {deltas} -> "
                     f"{'holds' if holds else 'DOES NOT hold'}")
    return notes


def engine_verdict(times: dict[str, list[float]], demo: dict, memory: dict) -> dict:
    """Issue 18's keep-rule for the CTranslate2 engine: keep it only if a CTranslate2 variant evaluates >= 1.5x
    faster than the torch path the app serves (`ours`) with ROUGE-1 within 0.005 of fp32 on the trained demo family."""
    ours = median(times["ours"])
    out = {"keep_rule": f"speed-up over ours >= {KEEP_SPEEDUP} and max |ΔROUGE-1| <= {ROUGE_TOLERANCE}",
           "peak_rss_mb": memory, "variants": {}}
    for name in CT2_VARIANTS:
        quality = demo.get("variants", {}).get(name, {}).get("max_abs_rouge1_delta")
        speedup = round(ours / median(times[name]), 2)
        out["variants"][name] = {"speedup_vs_ours": speedup, "max_abs_rouge1_delta": quality,
                                 "kept": quality is not None and speedup >= KEEP_SPEEDUP and quality <= ROUGE_TOLERANCE}
    out["keep"] = any(v["kept"] for v in out["variants"].values())
    return out


def engine_notes(engine: dict) -> list[str]:
    lines = [f"CTranslate2 engine, keep-rule ({engine['keep_rule']}): {'KEEP' if engine['keep'] else 'DROP'}"]
    for name, v in engine["variants"].items():
        lines.append(f"  {name}: {v['speedup_vs_ours']}× ours, max |ΔROUGE-1| {v['max_abs_rouge1_delta']} -> "
                     f"{'meets' if v['kept'] else 'misses'} it")
    peaks = ", ".join(f"{k} {v['peak']:,.0f} MB" for k, v in engine["peak_rss_mb"].items())
    return [*lines, f"  peak RSS of a fresh process loading the set and evaluating the sample: {peaks}"]


def rss_probe(variant: str, bench, texts: list[str]) -> dict:
    """Resident memory of a fresh process that loads the variant's ModelSet on the benchmark family and evaluates
    `texts` through every slot (`python -m benchmarks.evaluation`): after loading, and the peak."""
    import json
    import subprocess
    import sys
    import tempfile

    from workbench import paths

    with tempfile.TemporaryDirectory() as folder:
        prompt_file = Path(folder) / "prompts.json"
        prompt_file.write_text(json.dumps(texts))
        done = subprocess.run([sys.executable, "-m", "benchmarks.evaluation", variant, str(prompt_file),
                               str(bench.family.models_config)], env=bench.family.env(), cwd=paths.REPO_ROOT,
                              capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {variant} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def demo_quality(n: int, variants=None, *, with_engine: bool = False) -> dict:
    """Reduced-precision outputs vs fp32 on the trained demo family (configs/models/demo.yaml, store/), greedy with
    natural lengths over `n` demo test dialogues. The reference is the fp32 ModelSet, batched; that it equals the
    per-example fp32 loop is checked on the first 32 dialogues. `auto` is what the app serves; bf16 only where the
    CPU has it natively (emulated, it would take minutes per dialogue); `with_engine` adds the CTranslate2 variants.
    Each variant's generation time is recorded too (run one after another, not interleaved: a rough guide)."""
    from workbench import modeling

    variants = variants or ("auto", *(("bf16",) if modeling.cpu_has_bf16() else ()), "int8-dynamic",
                            *(CT2_VARIANTS if with_engine else ()))
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
    start = time.perf_counter()
    reference = {s: reference_set.generate_batch(s, texts, settings) for s in slots}
    fp32_seconds = round(time.perf_counter() - start, 2)
    loop = load_naive({s: reference_set.status[s].folder for s in slots})
    per_example = {s: [naive_generate(m, t, p, settings) for p in texts[:32]] for s, (m, t) in loop.items()}
    batching_changes = sum(a != b for s in slots for a, b in zip(per_example[s], reference[s]))
    out = {"available": True, "n": len(rows), "slots": slots, "unavailable": missing,
           "fp32_batched_vs_per_example_differ": batching_changes, "fp32_seconds": fp32_seconds, "variants": {}}
    for variant in variants:
        models = _demo_set(variant)
        start = time.perf_counter()
        candidate = models.generate_slots(slots, texts, settings)
        out["variants"][variant] = {"precision": engine_label(models), "seconds": round(time.perf_counter() - start, 2),
                                    **agreement(reference, candidate, rows)}
    return out


def _demo_set(variant: str):
    return load_modelset(DEFAULT_CONFIG, None if variant == "auto" else variant)


def _probe_main(argv: list[str]) -> None:
    """`python -m benchmarks.evaluation VARIANT PROMPTS_JSON MODELS_YAML`: load the variant's ModelSet (auto, or a
    dtype / ct2-<dtype> variant), evaluate the prompts through every slot, print RSS after loading and the peak (MiB)
    as one JSON line. The store is the one WORKBENCH_STORE names."""
    import json

    variant, prompt_file, config = argv
    texts = json.loads(Path(prompt_file).read_text())
    start = time.perf_counter()
    models = load_modelset(Path(config), None if variant == "ours" else variant)
    report = {"variant": variant, "load_s": round(time.perf_counter() - start, 2), "after_load": rss_mb()["rss"]}
    models.generate_slots(SLOTS, texts, GenerationSettings(max_new_tokens=64, min_new_tokens=64))
    print(json.dumps({**report, "after_evaluate": rss_mb()["rss"], "peak": rss_mb()["peak"]}))


if __name__ == "__main__":
    import sys

    _probe_main(sys.argv[1:])
