"""Speed and memory benchmarks at FLAN-T5-base scale (not part of the test run).

    python -m benchmarks                          # every measure, default settings (under 15 min on 2 CPU cores)
    python -m benchmarks --quick                  # smoke run: one repetition, few dialogues
    python -m benchmarks --only compare,memory    # some measures

Each measure runs the naive path and ours side by side in one run (interleaved repetitions), prints medians and
the ratio against its goal (PASS/MISS), and writes results/benchmarks/<measure>.json plus summary.json. A MISS is
followed by why (benchmarks/why.py, also under `why` in the JSON): the weight bytes each path reads per decoding
step, how a step's cost grows with its rows, a torch.profiler run of ours by kind of work, and what was tried.

  compare   one dialogue, four models: four separate fp32 models one after another vs ModelSet.summarize
            (one mixed-adapter batch for base/LoRA/PPO + the full model, bf16 where the CPU has it)   goal ≥ 4×
  memory    RSS of the loaded four-model set after one compare, each in a fresh process; ours vs a single
            fp32 base model                                                                          goal ≤ 2.3×
  evaluate  four models over N test dialogues: per-example fp32 loops vs the evaluator's batched, length-sorted
            path; outputs compared (ROUGE-1 within 0.005), also on the trained demo family            goal ≥ 6×
  training  tokens/s of full and LoRA fine-tuning: pad-to-max fp32 vs dynamic padding + length grouping +
            bf16 autocast (the trainers' settings)                                                   goal ≥ 1.5×
  startup   launch `python -m workbench` to the first answered /compare request via gradio_client, for the
            demo family and the FLAN-T5-base-architecture family                                     (no goal)

Every JSON records the CPU it ran on (`machine`: cpu_kind, cpu_flags, PyTorch's kernel capability, and the variables
that cap it). To measure an AVX2-only CPU on an AVX512 one, cap every kernel library before torch loads:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        python -m benchmarks --out results/benchmarks/avx2

The models have google/flan-t5-base's architecture (248M parameters) with random weights, built into a temporary
local store (nothing is downloaded); dialogues and lengths come from DialogSum (../shared/data/dialogsum). This
machine's rule: run it under the CPU lock, `flock /tmp/cpu.lock .venv/bin/python -m benchmarks`.
"""

from __future__ import annotations

import os

for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                     "TOKENIZERS_PARALLELISM": "false", "GRADIO_ANALYTICS_ENABLED": "False"}.items():
    os.environ.setdefault(_key, _value)

import argparse  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.common import OUT_DIR, Result, Skip, fmt, machine  # noqa: E402
from benchmarks.why import lines as why_lines  # noqa: E402
from workbench.io import atomic_write_json  # noqa: E402

MEASURES = ("compare", "evaluate", "training", "memory", "startup")  # run order: the first two share loaded models
MODULES = {"compare": "compare", "evaluate": "evaluation", "training": "training", "memory": "memory",
           "startup": "startup"}


class Bench:
    """What the measures share: the family, the run's size settings, and models loaded once for several measures."""

    def __init__(self, family, *, quick: bool, reps: int | None, n: int, n_demo: int):
        self.family, self.quick, self._reps, self.n, self.n_demo = family, quick, reps, n, n_demo
        self._naive = None
        self._modelsets: dict = {}

    def reps(self, default: int, full_min: int = 2) -> int:
        """Repetitions for a measure: --reps if given, 1 in --quick runs, else the measure's default."""
        if self._reps:
            return self._reps
        return 1 if self.quick else max(default, full_min)

    def naive_models(self):
        from benchmarks.family import load_naive, use_store

        if self._naive is None:
            with use_store(self.family.store_dir):
                self._naive = load_naive(self.family.folders())
        return self._naive

    def modelset(self, variant: str | None = None):
        """The app's ModelSet on the family: dtype auto (ours), or a variant: fp32, bf16, int8-dynamic."""
        from benchmarks.family import load_modelset, use_store

        if variant not in self._modelsets:
            with use_store(self.family.store_dir):
                self._modelsets[variant] = load_modelset(self.family.models_config, variant)
        return self._modelsets[variant]

    def release(self) -> None:
        self._naive, self._modelsets = None, {}
        gc.collect()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(MEASURES),
                        help=f"comma-separated measures to run (default: all of {','.join(MEASURES)})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repetition, 4 dialogues, 1 training step; writes to results/benchmarks/quick/")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measure (default: per measure, 2-3)")
    parser.add_argument("-n", "--dialogues", type=int, default=None,
                        help="test dialogues for the evaluate measure (default 8; --quick 4)")
    parser.add_argument("--family-dir", type=Path, default=None,
                        help="build the FLAN-T5-base-architecture family here and keep it; reused when present "
                             "(default: a temporary folder, deleted afterwards)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON results "
                        "(default results/benchmarks/, or results/benchmarks/quick/ with --quick)")
    args = parser.parse_args(argv)
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(args.only) - set(MEASURES))
    if unknown:
        parser.error(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
    if args.reps is not None and args.reps < 1 or args.dialogues is not None and args.dialogues < 1:
        parser.error("--reps and --dialogues must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = args.out or (OUT_DIR / "quick" if args.quick else OUT_DIR)
    started = time.perf_counter()
    from benchmarks import family as family_mod
    from workbench import modeling

    modeling.quiet_transformers()
    print(f"[bench] machine: {machine()}", flush=True)
    try:
        family = family_mod.build(args.family_dir)
    except Skip as err:
        print(f"[bench] skipped: {err}")
        return 0
    try:
        stats = family.token_stats()
        print(f"[bench] FLAN-T5-base-architecture family ready in {time.perf_counter() - started:.0f} s at "
              f"{family.root}; tokenizer: {stats}", flush=True)
        bench = Bench(family, quick=args.quick, reps=args.reps, n=args.dialogues or (4 if args.quick else 8),
                      n_demo=48 if args.quick else 240)
        results: list[Result] = []
        errors: dict[str, str] = {}
        for measure in [m for m in MEASURES if m in args.only]:
            if measure in ("training", "memory", "startup"):
                bench.release()  # the models the first measures share would only crowd memory from here on
            print(f"\n[bench] {measure} ...", flush=True)
            clock = time.perf_counter()
            try:
                result = importlib.import_module(f"benchmarks.{MODULES[measure]}").run(bench)
            except Skip as err:
                print(f"[bench] {measure} skipped: {err}")
                continue
            except Exception as err:  # noqa: BLE001 - report and go on with the other measures
                traceback.print_exc()
                errors[measure] = f"{type(err).__name__}: {err}"
                continue
            result.seconds = round(time.perf_counter() - clock, 1)
            results.append(result)
            atomic_write_json(out_dir / f"{measure}.json", {**result.as_dict(), "family": stats})
            report(result)
        total = time.perf_counter() - started
        print("\n" + summary_table(results, errors, total))
        atomic_write_json(out_dir / "summary.json", {
            "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
            "total_seconds": round(total, 1), "machine": machine(), "family": stats, "errors": errors,
            "measures": {r.measure: {"title": r.title, "unit": r.unit, "naive": r.naive, "ours": r.ours,
                                     "ratio": r.ratio, "goal": str(r.goal) if r.goal else None,
                                     "verdict": r.verdict, "seconds": r.seconds} for r in results}})
        return 1 if errors else 0
    finally:
        if args.family_dir is None:
            shutil.rmtree(family.root, ignore_errors=True)


def report(result: Result) -> None:
    """The measure's rows and notes, as soon as it finishes."""
    ratio = "" if result.ratio is None else f"  ratio {result.ratio:.2f}× ({result.goal.ratio}) goal {result.goal}"
    print(f"[bench] {result.title}: naive {fmt(result.naive, result.unit)}, ours {fmt(result.ours, result.unit)}"
          f"{ratio}  -> {result.verdict}  ({result.seconds:.0f} s)")
    for row in result.rows:
        print("    " + ", ".join(f"{k}={v}" for k, v in row.items()))
    for name, ok in result.checks.items():
        print(f"    check {name}: {'ok' if ok else 'FAILED'}")
    for note in result.notes:
        print(f"    {note}")
    for line in why_lines(result.why) if result.why else []:
        print(f"    {line}")


def summary_table(results: list[Result], errors: dict[str, str], total: float) -> str:
    head = f"{'measure':9} {'naive':>14} {'ours':>14} {'ratio':>7}  {'goal':7} {'result':6}  ratio is"
    lines = [head, "-" * len(head)]
    for r in results:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}×"
        lines.append(f"{r.measure:9} {fmt(r.naive, r.unit):>14} {fmt(r.ours, r.unit):>14} {ratio:>7}  "
                     f"{str(r.goal) if r.goal else '-':7} {r.verdict:6}  {r.goal.ratio if r.goal else r.details.get('columns', '')}")
    lines += [f"{m:9} ERROR {e}" for m, e in errors.items()]
    cpu = machine()
    caps = ", ".join(f"{k}={v}" for k, v in cpu["isa_caps"].items())
    lines.append(f"CPU kind {cpu['cpu_kind']} ({cpu['processor']}, {cpu['cpus']} CPUs, PyTorch kernels "
                 f"{cpu['torch_cpu_capability']}{'; emulated: ' + caps if caps else ''})")
    lines.append(f"total {total:.0f} s ({total / 60:.1f} min)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
