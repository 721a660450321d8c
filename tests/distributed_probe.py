"""Run a trainer module as torchrun's worker script and report, from each process, how many data-parallel wrappers
are still alive once it has left the process group (tests/test_distributed.py). A wrapper alive then holds gloo's
process group until interpreter shutdown, where tearing it down can abort the process.

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_probe.py trainers.lora --max-steps 6 ...
"""

import gc
import os
import runpy
import sys

import torch

from trainers import common

REPORT = "data-parallel wrappers alive after leaving the process group:"
_leave = common.end_distributed


def _leave_and_count(*args, **kwargs) -> None:
    _leave(*args, **kwargs)
    gc.collect()
    alive = sum(isinstance(o, torch.nn.parallel.DistributedDataParallel) for o in gc.get_objects())
    print(f"[rank {os.environ.get('RANK', '0')}] {REPORT} {alive}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    common.end_distributed = _leave_and_count
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
