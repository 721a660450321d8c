"""Serving precision against fp32 on the trained demo family: how many outputs stay identical, how far ROUGE-1 moves.

    .venv/bin/python -m benchmarks.precision                       # whole demo test split, every precision below
    .venv/bin/python -m benchmarks.precision --limit 48 --precisions bf16 int8+bf16

Reduced precision is not "exact": `modeling.ExactTopLogits` recomputes the head's leading logits in fp32, but from a
hidden state computed in bf16 (with int8 weights, if so served), so a near tie between two tokens can still go the
other way and the rest of the summary with it. This measures by how much, for each precision the app can serve on
this CPU:

    fp32        the reference
    bf16        dtype: bf16 (what `auto` serves on GPUs with bf16)
    int8+bf16   int8 weights, bf16 compute: what `auto` serves on CPUs with native bf16 (AVX512-BF16 or AMX)
    int8+fp32   int8 weights, fp32 compute: what `int8` serves on CPUs without native bf16; measured here by loading
                as such a CPU would (WORKBENCH_CPU_KIND=avx2), where the int8 kernel takes fp32 inputs
    int8-dynamic  torch.ao dynamic int8 (per-channel int8 weights, int8 activations per call, fp32 out): the
                candidate for `auto` on AVX2-only CPUs (modeling.AVX2_AUTO)

Each precision loads the four demo models exactly as the app does (`ModelSet` on configs/models/demo.yaml) and runs
every test dialogue through every slot by the Toxicity tab's path: chunks of 16 dialogues in file order,
`ModelSet.generate_slots` (one mixed-adapter call for base/LoRA/PPO, one for the full model), greedy, 64 new tokens,
the instruction prompt. Output: results/benchmarks/precision.json (per precision and slot: outputs identical to fp32,
ROUGE-1 against the references for fp32 and for it, and the paired ROUGE-1 difference with its 95% bootstrap CI),
with the CPU's flags, the torch version and the store revision of each model measured.
"""

from __future__ import annotations

import os

for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                     "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.common import OUT_DIR, agreement, environment, machine  # noqa: E402
from benchmarks.family import load_modelset  # noqa: E402
from workbench import data, modeling, paths, prompts  # noqa: E402
from workbench.io import atomic_write_json  # noqa: E402
from workbench.generation import GenerationSettings  # noqa: E402
from workbench.modelset import DEFAULT_CONFIG, SLOTS  # noqa: E402

PRECISIONS = {"fp32": ("fp32", None), "bf16": ("bf16", None), "int8+bf16": ("int8", None),
              "int8+fp32": ("int8", "avx2"), "int8-dynamic": ("int8-dynamic", None)}
# key -> (models-config dtype, the CPU kind to load as: None = this CPU's own)
CHUNK = 16  # the Toxicity tab's batch size: dialogues per generate_slots call
SETTINGS = GenerationSettings(max_new_tokens=64)


def cpu_kind(kind: str | None):
    """Load as a CPU of `kind` would (modeling.CPU_KIND_ENV); None leaves this CPU's answer alone."""
    return environment(modeling.CPU_KIND_ENV, kind)


def load(key: str, config: Path):
    """The app's ModelSet on the demo family at precision `key`, or None when this CPU cannot serve it."""
    dtype, kind = PRECISIONS[key]
    with cpu_kind(kind):
        try:
            models = load_modelset(config, dtype)
        except ValueError:  # e.g. int8-dynamic without a quantized engine
            return None
    return models if models.precision.key == key else None


def pinned_config(revisions: dict, folder: Path) -> Path:
    """The demo models config with each slot pinned to the revision measured first, so that every precision
    compares the same models even if one is republished during the run."""
    lines = [f"{slot}: {{ref: {v['ref']}, revision: {v['revision']}}}" for slot, v in revisions.items()]
    path = folder / "models.yaml"
    path.write_text("\n".join(lines) + "\ntoxicity: profanity-check\n")
    return path


def run_all(models, rows: list[dict], bar) -> dict[str, list[str]]:
    """Every row through every slot, CHUNK rows per generate_slots call, in file order (as the Toxicity tab does)."""
    texts = [prompts.zero_shot(r["dialogue"]) for r in rows]
    out: dict[str, list[str]] = {slot: [] for slot in SLOTS}
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start: start + CHUNK]
        for slot, outputs in models.generate_slots(SLOTS, chunk, SETTINGS, batch_size=CHUNK).items():
            out[slot] += outputs
        bar.update(len(chunk))
    return out


def measure(keys: list[str], rows: list[dict], save) -> None:
    """fp32 first, then each other precision; `save(entries, models measured, notes)` after each, so that a run
    stopped early keeps what it measured."""
    from tqdm.auto import tqdm

    import tempfile

    entries, notes, reference, revisions, config = [], [], None, {}, DEFAULT_CONFIG
    pins = tempfile.TemporaryDirectory(prefix="precision-")
    with pins, tqdm(total=len(rows) * len(keys), desc="precision", unit="dialogue") as bar:
        for key in keys:
            bar.set_postfix_str(key)
            started = time.time()
            models = load(key, config)
            if models is None:
                notes.append(f"{key}: not servable on this CPU (no int8 kernel for it); skipped")
                bar.update(len(rows))
                save(entries, revisions, notes)
                continue
            missing = [f"{s}: {models.status[s].error}" for s in SLOTS if not models.status[s].ok]
            if missing:
                raise SystemExit(f"error: the demo family does not load: {'; '.join(missing)} "
                                 "(build it with `make demo`)")
            if not revisions:
                revisions = {s: {"ref": models.status[s].ref, "revision": models.status[s].revision} for s in SLOTS}
                config = pinned_config(revisions, Path(pins.name))
            outputs = run_all(models, rows, bar)
            entry = {"key": key, "precision": str(models.precision), "seconds": round(time.time() - started, 1)}
            reference = reference or outputs
            entries.append({**entry, **agreement(reference, outputs, rows)})
            save(entries, revisions, notes)
            del models


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", nargs="+", choices=[k for k in PRECISIONS if k != "fp32"],
                        default=[k for k in PRECISIONS if k != "fp32"], help="what to compare with fp32 (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="first N test dialogues only (default: all 240)")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "precision.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = data.load_dialogues(data.DEMO, "test", limit=args.limit)
    modeling.quiet_transformers()
    started = time.time()
    result: dict = {}

    def save(entries, revisions, notes):
        result.update(entries=entries, notes=notes)
        atomic_write_json(args.out, {
            "measure": "precision", "command": " ".join(["python -m benchmarks.precision", *(argv or sys.argv[1:])]),
            "title": "Serving precision vs fp32: outputs identical and ROUGE-1 change, demo family, demo test split",
            "models_config": DEFAULT_CONFIG.relative_to(paths.REPO_ROOT).as_posix(), "models": revisions,
            "dataset": {"id": data.DEMO, "split": "test", "n": len(rows)},
            "path": f"ModelSet.generate_slots, {CHUNK} dialogues per call in file order (the Toxicity tab's path)",
            "settings": SETTINGS.as_dict(), "reference": "fp32", "precisions": entries, "notes": notes,
            "machine": machine(), "seconds": round(time.time() - started, 1)})

    measure(["fp32", *args.precisions], rows, save)
    entries = result.get("entries", [])
    for e in entries:
        deltas = ", ".join(f"{s} {v['rouge1_delta']:+.4f}" for s, v in e["per_slot"].items())
        print(f"{e['key']:10} {e['identical']}/{e['outputs']} identical to fp32 ({e['identical_share']:.1%}); "
              f"ΔROUGE-1 {deltas}; {e['seconds']:.0f} s")
    print("\n".join(result.get("notes", [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
