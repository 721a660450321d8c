"""Build the whole offline demo family with one command, each step a trainer run as a user would run it:

    corpus   synthetic DialogSum-style dialogues           -> data/demo/
    base     tokenizer + span-corruption pretraining       -> store/demo/flan-t5-demo-base   configs/recipes/pretrain.yaml
    full     full fine-tune                                -> store/demo/flan-t5-demo-full   configs/recipes/full.yaml
    lora     LoRA (r=32, alpha=32, q/v)                    -> store/demo/flan-t5-demo-lora   configs/recipes/lora.yaml
    reward   reward model from preference pairs           -> store/demo/toxicity-reward     configs/recipes/reward.yaml
    ppo      PPO detoxification of the LoRA adapter        -> store/demo/flan-t5-demo-ppo    configs/recipes/ppo.yaml
    pairs    preference pairs sampled from the LoRA adapter -> store/datasets/demo/summary-pairs configs/recipes/pairs.yaml
    orpo     ORPO on those pairs, from the same start as PPO -> store/demo/flan-t5-demo-orpo  configs/recipes/orpo.yaml

Each trainer runs from its recipe file, which names the demo output explicitly: trainers run by hand publish under
local/... names and never replace what the app serves.

Each step is evaluated on the whole demo test split (results/) and published to the local store. A step that is
interrupted resumes from its checkpoint when the command is run again. At the end older store revisions are pruned
so that only what the workbench serves is committed.

    python -m trainers.build_demo                       # everything (see README for the wall time on 2 CPU cores)
    python -m trainers.build_demo --steps lora,ppo      # some steps
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from workbench import paths

RECIPES = "configs/recipes"  # each step's exact settings, output name included; relative to the repository


def _recipe(trainer: str) -> list[str]:
    """`-m trainers.<x> --config configs/recipes/<x>.yaml`: the model card then names the recipe that built it."""
    return ["-m", f"trainers.{trainer}", "--config", f"{RECIPES}/{trainer}.yaml"]


STEPS = {
    "corpus": ["-m", "workbench.corpus", "--out", str(paths.DEMO_DATA_DIR), "--n", "2400", "--seed", "0",
               "--open", "6000"],
    "base": _recipe("pretrain"),
    "full": _recipe("full"),
    "lora": _recipe("lora"),
    "reward": _recipe("reward"),
    "ppo": _recipe("ppo"),
    "pairs": _recipe("pairs"),
    "orpo": ["-m", "trainers.preference", "--config", f"{RECIPES}/orpo.yaml"],
}
DEMO_REPOS = ["demo/flan-t5-demo-base", "demo/flan-t5-demo-full", "demo/flan-t5-demo-lora",
              "demo/toxicity-reward", "demo/flan-t5-demo-ppo", "demo/flan-t5-demo-orpo"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.build_demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated steps (default: all: {','.join(STEPS)})")
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints of earlier interrupted runs")
    parser.add_argument("--no-prune", action="store_true", help="keep older store revisions")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:  # one line, as the trainers report a bad option
        print(f"error: steps: unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}", file=sys.stderr)
        return 2
    started = time.time()
    timings = {}
    for i, step in enumerate(steps, 1):
        print(f"\n=== [{i}/{len(steps)}] {step} ({time.time() - started:.0f}s elapsed) ===", flush=True)
        cmd = [sys.executable, *STEPS[step]] + (["--fresh"] if args.fresh and step not in ("corpus", "pairs") else [])
        t0 = time.time()
        result = subprocess.run(cmd, cwd=paths.REPO_ROOT)
        timings[step] = time.time() - t0
        if result.returncode != 0:
            print(f"step {step} failed (exit {result.returncode}); fix it and run the same command again: "
                  "finished steps are in the store and interrupted ones resume", file=sys.stderr)
            return result.returncode
    if not args.no_prune:
        from workbench.store import LocalStore

        local = LocalStore()
        for repo in DEMO_REPOS:
            if local.exists(repo):
                local.prune(repo, keep=1)
    print("\n=== done ===")
    for step, seconds in timings.items():
        print(f"{step:8} {seconds / 60:6.1f} min")
    print(f"{'total':8} {(time.time() - started) / 60:6.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
