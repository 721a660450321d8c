"""Memory probe, run in a fresh interpreter per configuration so that its resident memory is its own:

    python -m benchmarks.probe torch|single|naive|ours|ours-bf16 PROMPT_FILE MODELS_YAML

torch   bare python + `import torch` (the floor every configuration stands on)
single  one fp32 base model (+ tokenizer), one generation
naive   four separately loaded fp32 models, one compare (four generations)
ours    the app's ModelSet on MODELS_YAML (dtype from the config), one `summarize` of the four slots
ours-bf16  the same with dtype bf16 (no int8 weights)

Prints one JSON line: RSS after imports, after loading, after the compare, and the peak (VmHWM), in MiB.
The store is the one WORKBENCH_STORE names.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.common import rss_mb


def main(argv: list[str]) -> None:
    kind, prompt_file, config = argv
    import torch  # noqa: F401 - the baseline

    report = {"kind": kind, "after_import": rss_mb()["rss"]}
    if kind != "torch":
        from benchmarks.common import naive_generate
        from benchmarks.family import REPOS, load_modelset, load_naive
        from workbench import modeling, store
        from workbench.generation import GenerationSettings
        from workbench.modelset import SLOTS

        modeling.quiet_transformers()
        prompt = Path(prompt_file).read_text()
        settings = GenerationSettings(max_new_tokens=64, min_new_tokens=64)
        report["after_import"] = rss_mb()["rss"]
        start = time.perf_counter()
        if kind.startswith("ours"):
            models = load_modelset(Path(config), "bf16" if kind == "ours-bf16" else None)
            report["precision"] = str(models.precision)
        else:
            slots = ("base",) if kind == "single" else SLOTS
            models = load_naive({s: store.LocalStore().resolve(REPOS[s]) for s in slots})
        report["load_s"] = round(time.perf_counter() - start, 2)
        report["after_load"] = rss_mb()["rss"]
        if kind.startswith("ours"):
            models.summarize(dict.fromkeys(SLOTS, prompt), settings)
        else:
            for model, tokenizer in models.values():
                naive_generate(model, tokenizer, prompt, settings)
        report["after_compare"] = rss_mb()["rss"]
    report["peak"] = rss_mb()["peak"]
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
