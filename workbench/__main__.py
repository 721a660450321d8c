"""Serve the workbench: load the four models once, then launch the gradio app.

    python -m workbench                                   # the committed demo family, http://127.0.0.1:7860
    python -m workbench --models configs/models/hub.yaml  # the reference recipe's models (demo fallbacks)
    python -m workbench --host 0.0.0.0 --port 8080 --share no

The models config can also be chosen with the environment variable WORKBENCH_MODELS.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _yes_no(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("yes", "y", "true", "1", "on"):
        return True
    if lowered in ("no", "n", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from workbench.modelset import DEFAULT_CONFIG

    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=os.environ.get("WORKBENCH_MODELS") or str(DEFAULT_CONFIG),
                        help="models config (default: $WORKBENCH_MODELS or configs/models/demo.yaml)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", type=_yes_no, default=False, metavar="yes|no",
                        help="create a public gradio.live link (default no)")
    parser.add_argument("--concurrency", type=int, default=20,
                        help="requests handled at once per event (default 20: concurrent Compare requests are "
                             "micro-batched by the model set, so they must be let in together)")
    parser.add_argument("--max-queue", type=int, default=64, help="requests allowed to wait (default 64)")
    parser.add_argument("--allow-training", type=_yes_no, metavar="yes|no",
                        default=_yes_no(os.environ.get("WORKBENCH_ALLOW_TRAINING", "no")),
                        help="add the Train tab, which runs the trainer CLIs on this machine (default no, or "
                             "$WORKBENCH_ALLOW_TRAINING; on a Space only its owner may start runs)")
    parser.add_argument("--device", default=None,
                        help="torch device for every model (default: the config's `device:`, else cuda if available, "
                             "else cpu)")
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    if not 1 <= args.max_queue <= 10_000:
        parser.error("--max-queue must be between 1 and 10000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Gradio's queue rebuilt a pandas table of its last 10,000 events after every event (for its monitoring page):
    # under load that grew to the server's third-largest cost. Every 50 events over the last 1,000 is plenty.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "50")
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from workbench.modelset import ModelSet, ModelSetConfig, ModelSetError

    started = time.time()
    try:  # a broken models config is reported in one line before any model is loaded
        config = ModelSetConfig.load(args.models)
    except ModelSetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[workbench] loading models from {args.models} ...", flush=True)
    try:
        modelset = ModelSet(config, device=args.device)
    except ModelSetError as err:  # e.g. device cuda on a machine without one
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[workbench] models loaded in {time.time() - started:.1f} s on {modelset.device} "
          f"({modelset.serving}, input limit {modelset.max_input_tokens} tokens)")
    for slot in modelset.slots:
        print(f"  {'ok ' if modelset.status[slot].ok else 'N/A'}  {modelset.status[slot].describe()}")
    scorer = getattr(modelset.scorer, "name", None)
    note = f" (fallback: {modelset.scorer_note})" if modelset.scorer_note else ""
    print(f"  toxicity scorer: {scorer or 'unavailable: ' + str(modelset.scorer_error)}{note}", flush=True)
    if not modelset.available:
        print("[workbench] warning: no model could be loaded; the app starts but can only show why. "
              "Build the demo family with: python -m trainers.build_demo", file=sys.stderr)

    from workbench.app_service import WorkbenchService
    from workbench.ui import build_app, launch_kwargs

    jobs = None
    if args.allow_training:
        from workbench.jobs import TrainingJobs

        jobs = TrainingJobs()
    demo = build_app(WorkbenchService(modelset), concurrency=args.concurrency, max_queue=args.max_queue, jobs=jobs)
    print(f"[workbench] ready in {time.time() - started:.1f} s", flush=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_kwargs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
