"""Load test: many concurrent users of the Compare endpoint against the real app, as a public Space would see it.

    python -m benchmarks.load                                  # 20 users for 120 s on configs/models/demo.yaml,
                                                               # unbatched server, then the batched one
    python -m benchmarks.load --variants batched               # the app as it serves by default, only
    python -m benchmarks.load --variants unbatched,batched,ctranslate2   # and the CTranslate2 engine, batched
    python -m benchmarks.load --users 5 --seconds 30 --models configs/models/hub.yaml
    python -m benchmarks.load --url https://you-dialogue-workbench.hf.space/   # a running app (no RSS sampling)

1. Launches `python -m workbench` (the app exactly as `make run` serves it: its queue, its concurrency limit) on a
   free port and waits until it answers.
2. Single user first: greedy Compare on each of a seeded sample of demo test dialogues, one request at a time. These
   outputs are the reference.
3. `--users` threads, each with its own gradio_client, send Compare requests back to back for `--seconds`, picking
   dialogues from the same sample. The users are spread over `--client-processes` processes (default 4): a
   gradio_client request costs about 60 ms of Python, so 20 users in one process were held back by that process's
   GIL (they measured the load generator, not the app). Every answer is checked against the single-user outputs of
   its dialogue: any difference would mean one request's adapter leaked into another's (cross-talk) or state was
   shared.
4. Meanwhile the server's resident memory (RSS, /proc/<pid>/status) is sampled every second, and the CPU seconds of
   the server (/proc/<pid>/stat) and of the client processes are counted over the load: where the cores went, per
   request. A batched p95 over its goal is followed by what it needs by Little's law (users / throughput is the mean
   wait of a closed loop) and what that rate would cost in cores.

5. By default all of this runs twice, one server after the other in the same run: `unbatched` (the app with
   WORKBENCH_MAX_BATCH=1: requests served one at a time) and `batched` (the app's default: the model set's
   micro-batcher runs concurrent Compare requests with the same settings in shared calls). Reported side by side:
   the throughput ratio (goal ≥ 3×), the batched p95 (goal ≤ 2 s), and whether both servers gave the same
   single-user answers (batching may not change an answer); with the CPU kind and the machine's load average.
   `ctranslate2` is a third variant on request: the same models config with `engine: ctranslate2`, batched.

Counted separately: answered and identical, answered but different (cross-talk), rejected by the queue (full), and
errors. Reported: p50/p95/p99 latency and throughput of answered requests, RSS over time and its trend after
warm-up. Written to results/benchmarks/load.json (the top-level `load`, `single_user`, `rss_mb_over_time` are the
batched server's; `variants` has both). Exit status 1 if any answer differed or any request failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import free_port, rss_mb
from workbench.store import shown_path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = REPO_ROOT / "configs" / "models" / "demo.yaml"
DEFAULT_OUT = REPO_ROOT / "results" / "benchmarks" / "load.json"
COMPARE_ARGS = ("", "greedy", 64, 4, 0.7, 0.9, 0)  # reference, decoding, max_new_tokens, beams, temperature, top_p, seed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=str(DEFAULT_MODELS), help="models config to serve (default: demo.yaml)")
    parser.add_argument("--users", type=int, default=20, help="concurrent users (default 20)")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the load phase (default 120)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of the load phase excluded from the memory trend (default: a quarter, max 30)")
    parser.add_argument("--dialogues", type=int, default=12, help="distinct dialogues in the sample (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="sample and request-order seed")
    parser.add_argument("--url", default=None, help="load an app that is already running instead of launching one")
    parser.add_argument("--concurrency", type=int, default=None, help="passed to python -m workbench")
    parser.add_argument("--max-queue", type=int, default=None, help="passed to python -m workbench")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-request timeout in seconds")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the JSON report")
    parser.add_argument("--variants", default="unbatched,batched",
                        help="servers to measure one after the other: unbatched (WORKBENCH_MAX_BATCH=1), batched "
                             "(the app's default micro-batching), ctranslate2 (batched, the models config with "
                             "engine: ctranslate2); default unbatched,batched, side by side")
    parser.add_argument("--client-processes", type=int, default=4,
                        help="processes the users are spread over (default 4; 1: all users as threads of this one)")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not args.variants or set(args.variants) - set(VARIANTS):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    if not 1 <= args.users <= 500:
        parser.error("--users must be between 1 and 500")
    if not 1 <= args.client_processes <= 64:
        parser.error("--client-processes must be between 1 and 64")
    if "ctranslate2" in args.variants and args.url:
        parser.error("--variants ctranslate2 launches its own server; it cannot be used with --url")
    if not args.seconds > 0 or not 1 <= args.dialogues <= 500:
        parser.error("--seconds must be positive and --dialogues between 1 and 500")
    return args


# ------------------------------------------------------------------------------------------------ the server


@contextlib.contextmanager
def launched_app(models: str, extra: list[str], log_path: Path, timeout: float = 600.0, env_extra: dict | None = None):
    """`python -m workbench` on a free port (with `env_extra` in its environment); yields (url, pid); stops it
    afterwards."""
    import urllib.request

    port = free_port()
    cmd = [sys.executable, "-m", "workbench", "--models", models, "--port", str(port), *extra]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           **(env_extra or {})}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.time() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the app exited with status {proc.returncode}; see {log_path}")
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError(f"the app did not answer within {timeout:.0f} s; see {log_path}")
                time.sleep(0.5)
            yield url, proc.pid
        finally:
            stop_process(proc)


class RssSampler(threading.Thread):
    def __init__(self, pid: int | None, every: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples = pid, every, []
        self._halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while self.pid is not None and not self._halt.is_set():
            memory = rss_mb(self.pid)
            if memory is not None:
                self.samples.append((round(time.monotonic() - self.t0, 2), round(memory["rss"], 1)))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def stop_process(proc: subprocess.Popen) -> None:
    """Ask a server process to stop; kill it if it has not within 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------------ requests


def texts_of(result: dict) -> dict[str, str | None]:
    return {slot: entry.get("text") for slot, entry in (result.get("models") or {}).items()}


def classify_error(err: BaseException) -> str:
    text = str(err).lower()
    return "rejected" if "queue is full" in text or "queue full" in text else "error"


def reference_outputs(url: str, dialogues: list[str], timeout: float) -> tuple[list[dict], list[float]]:
    """Single-user greedy outputs, one request at a time (the first one also warms the server up)."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    client.predict(dialogues[0], *COMPARE_ARGS, api_name="/compare")  # warm-up, not timed
    outputs, latencies = [], []
    for dialogue in dialogues:
        started = time.perf_counter()
        result = client.submit(dialogue, *COMPARE_ARGS, api_name="/compare").result(timeout=timeout)
        latencies.append(time.perf_counter() - started)
        if not result.get("ok"):
            raise RuntimeError(f"single-user request refused: {result.get('message')}")
        outputs.append(texts_of(result))
    return outputs, latencies


def user_loop(user: int, url: str, dialogues: list[str], reference: list[dict], stop_at: float, seed: int,
              timeout: float, t0: float, records: list, lock: threading.Lock) -> None:
    from gradio_client import Client

    rng = random.Random(seed * 1000 + user)
    try:
        client = Client(url, verbose=False)
    except Exception as err:  # noqa: BLE001 - a user who cannot even connect is an error, counted
        with lock:
            records.append({"user": user, "t": time.monotonic() - t0, "status": classify_error(err),
                            "error": f"connect: {type(err).__name__}: {str(err)[:200]}"})
        return
    while time.monotonic() < stop_at:
        i = rng.randrange(len(dialogues))
        started = time.monotonic()
        record = {"user": user, "dialogue": i, "t": round(started - t0, 3)}
        try:
            result = client.submit(dialogues[i], *COMPARE_ARGS, api_name="/compare").result(timeout=timeout)
            record["latency_s"] = round(time.monotonic() - started, 4)
            if not result.get("ok"):
                record.update(status="error", error=f"refused: {str(result.get('message'))[:200]}")
            else:
                got = texts_of(result)
                record["status"] = "ok" if got == reference[i] else "mismatch"
                if record["status"] == "mismatch":
                    record["diff"] = {s: {"got": got.get(s), "alone": reference[i].get(s)} for s in reference[i]
                                      if got.get(s) != reference[i].get(s)}
        except Exception as err:  # noqa: BLE001 - counted, not fatal
            record.update(latency_s=round(time.monotonic() - started, 4), status=classify_error(err),
                          error=f"{type(err).__name__}: {str(err)[:200]}")
        with lock:
            records.append(record)


def user_process(users: list[int], url: str, dialogues: list[str], reference: list[dict], start_at: float,
                 stop_at: float, seed: int, timeout: float, t0: float, out) -> None:
    """A client process: `users` as threads from `start_at` (CLOCK_MONOTONIC is the same in every process) until
    `stop_at`; their records go back through `out`."""
    records, lock = [], threading.Lock()
    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu_start = time.process_time()  # this process's CPU from here on is the load generator's
    threads = [threading.Thread(target=user_loop, args=(user, url, dialogues, reference, stop_at, seed, timeout, t0,
                                                        records, lock), daemon=True) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=stop_at - time.monotonic() + timeout + 60)
    with lock:
        out.put((list(records), time.process_time() - cpu_start))


def run_users(args: argparse.Namespace, url: str, dialogues: list[str], reference: list[dict], t0: float
              ) -> tuple[list[dict], float, float, float]:
    """`args.users` users spread over `args.client_processes` processes (spawned, so that none inherits this one's
    threads); returns their records, when the load started and stopped (monotonic), and the CPU seconds the client
    processes spent on it."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    n = min(args.client_processes, args.users)
    start_at = time.monotonic() + 3.0 + 0.5 * n  # time for the processes to start and import gradio_client
    stop_at = start_at + args.seconds
    procs = [context.Process(target=user_process, daemon=True,
                             args=(list(range(args.users))[k::n], url, dialogues, reference, start_at, stop_at,
                                   args.seed, args.timeout, t0, out)) for k in range(n)]
    for proc in procs:
        proc.start()
    records, client_cpu = [], 0.0
    for _ in procs:
        got, cpu = out.get(timeout=stop_at - time.monotonic() + args.timeout + 120)
        records, client_cpu = records + got, client_cpu + cpu
    for proc in procs:
        proc.join(timeout=30)
    last_answer = max([stop_at] + [t0 + r["t"] + (r.get("latency_s") or 0.0) for r in records])
    return records, start_at, last_answer, client_cpu


def process_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds (user + system, its threads included, and its waited-for children) a process has used so far, from
    /proc/<pid>/stat; None when there is no such process here."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime, stime, cutime, cstime


def cpu_accounting(server_s: float | None, clients_s: float, duration: float, answered: int,
                   cpus: int | None = None) -> dict:
    """Where the machine's cores went during the load: the server's and the load generator's CPU seconds, as cores
    busy on average and as milliseconds per answered request."""
    cpus = cpus or os.cpu_count() or 1
    out = {"cpus": cpus, "seconds": round(duration, 1), "clients_cpu_s": round(clients_s, 1),
           "clients_cores": round(clients_s / duration, 2) if duration else None,
           "clients_ms_per_request": round(1000 * clients_s / answered, 1) if answered else None}
    if server_s is not None:
        out.update(server_cpu_s=round(server_s, 1), server_cores=round(server_s / duration, 2) if duration else None,
                   server_ms_per_request=round(1000 * server_s / answered, 1) if answered else None,
                   busy_share=round((server_s + clients_s) / (duration * cpus), 2) if duration else None)
    return out


# ------------------------------------------------------------------------------------------------ report


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def trend_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of RSS over time, in MB per minute."""
    if len(samples) < 3:
        return None
    ts, ys = [t for t, _ in samples], [y for _, y in samples]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return None if var == 0 else 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var


def summarize(records: list[dict], samples: list[tuple[float, float]], load_start: float, load_end: float,
              warmup: float) -> dict:
    ok = [r for r in records if r["status"] == "ok"]
    answered = [r for r in records if r["status"] in ("ok", "mismatch")]
    latencies = [r["latency_s"] for r in answered]
    duration = load_end - load_start
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "mismatch", "rejected", "error")}
    during = [(t, y) for t, y in samples if load_start <= t <= load_end]
    after_warmup = [(t, y) for t, y in during if t >= load_start + warmup]
    memory = None
    if during:
        base = after_warmup[0][1] if after_warmup else during[0][1]
        end = (after_warmup or during)[-1][1]
        memory = {
            "before_load_mb": next((y for t, y in reversed(samples) if t < load_start), None),
            "after_warmup_mb": base, "end_mb": end, "max_mb": max(y for _, y in during),
            "growth_after_warmup_mb": round(end - base, 1),
            "trend_after_warmup_mb_per_min": None if (s := trend_mb_per_min(after_warmup)) is None else round(s, 2),
            "flat_after_warmup": abs(end - base) <= max(20.0, 0.05 * base),
        }
    return {
        "requests": len(records), **counts,
        "throughput_rps": round(len(answered) / duration, 3) if duration > 0 else None,
        "latency_s": {"p50": _r(percentile(latencies, 0.50)), "p95": _r(percentile(latencies, 0.95)),
                      "p99": _r(percentile(latencies, 0.99)), "max": _r(max(latencies) if latencies else None),
                      "mean": _r(statistics.fmean(latencies) if latencies else None)},
        "memory": memory,
        "passed": counts["mismatch"] == 0 and counts["error"] == 0 and len(ok) > 0,
    }


def _r(value, digits: int = 3):
    return None if value is None else round(value, digits)


def server_status(url: str) -> str | None:
    from gradio_client import Client

    try:
        return Client(url, verbose=False).predict(api_name="/status")
    except Exception:  # noqa: BLE001
        return None


VARIANTS = {"unbatched": {"WORKBENCH_MAX_BATCH": "1"}, "batched": {}, "ctranslate2": {}}  # the app's environment
ENGINE_VARIANTS = {"ctranslate2": "ctranslate2"}  # variants served from the models config with another engine


def variant_models(models: str, name: str) -> str:
    """The models config a variant serves: `models` itself, or a copy of it (in the temp folder) with the variant's
    engine."""
    if name not in ENGINE_VARIANTS:
        return models
    import yaml

    config = yaml.safe_load(Path(models).read_text()) or {}
    config["engine"] = ENGINE_VARIANTS[name]
    path = Path(tempfile.gettempdir()) / f"workbench-load-{os.getpid()}-{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)

GOALS = {"throughput_ratio": 3.0, "p95_s": 2.0}  # batched vs unbatched requests/s, and batched p95
# What was tried against the p95 miss, with what it gave (docs/PERFORMANCE.md, "Under concurrent load")
TRIED_P95 = [
    "the micro-batcher waits, for at most a quarter of the last batch's time, for that batch's users to come back "
    "(batches had alternated 1, 19, 1, 19): in process 6.7 -> 9.1 requests/s, p50 3.0 -> 2.1 s",
    "the toxicity scorer as one sparse product over its calibrated folds: the same probabilities in a seventh of the "
    "time (it was 18% of the server's samples)",
    "Gradio's analytics table rebuilt every 50 events instead of every event (4% of the server's samples)",
    "the CTranslate2 engine, batched: 7.04 requests/s at p95 3.8 s on the demo family (AVX512-BF16 machine)",
]


def p95_why(variant: dict, users: int | None) -> dict | None:
    """Why a closed loop of `users` misses the p95 goal, from the run's own figures: each user sends its next request
    when the last is answered, so mean latency = users / throughput (Little's law); the p95 goal then needs a
    throughput, and each request's CPU (server and load generator, both on this machine) turns that into cores."""
    load, cpu = variant["load"], variant.get("cpu") or {}
    lat, throughput = load["latency_s"], load["throughput_rps"]
    if not users or not throughput or not lat.get("mean") or lat.get("p95") is None:
        return None
    spread = lat["p95"] / lat["mean"]
    needed = users * spread / GOALS["p95_s"]
    out = {"users": users, "mean_s_by_littles_law": _r(users / throughput), "mean_s_measured": lat["mean"],
           "p95_over_mean": _r(spread, 2), "throughput_needed_rps": _r(needed, 2), "throughput_rps": throughput,
           "tried": TRIED_P95}
    if cpu.get("server_ms_per_request") is not None:
        per_request = cpu["server_ms_per_request"] + cpu["clients_ms_per_request"]
        most = cpu["cpus"] / (per_request / 1000)  # every core busy with these requests and nothing else
        out.update(cpu_ms_per_request=_r(per_request, 1), cores_needed=_r(needed * per_request / 1000, 2),
                   cpus=cpu["cpus"], busy_share=cpu["busy_share"], throughput_at_full_use_rps=_r(most, 2),
                   p95_s_at_full_use=_r(users / most * spread, 2))
    return out


def p95_why_lines(name: str, why: dict) -> list[str]:
    lines = [f"[load] why {name} misses p95: {why['users']} users in a closed loop wait users / throughput = "
             f"{why['mean_s_by_littles_law']} s on average (measured {why['mean_s_measured']} s) and p95 is "
             f"{why['p95_over_mean']}× the mean, so p95 ≤ {GOALS['p95_s']:g} s needs ≥ {why['throughput_needed_rps']} "
             f"requests/s (had {why['throughput_rps']})"]
    if "cores_needed" in why:
        lines.append(f"[load]   each request cost {why['cpu_ms_per_request']} ms of CPU (server and load generator "
                     f"together, both on this machine): {why['throughput_needed_rps']} requests/s would need "
                     f"{why['cores_needed']} cores of the {why['cpus']} here, which were {why['busy_share']:.0%} busy; "
                     f"with every core busy they would serve at most {why['throughput_at_full_use_rps']} requests/s, "
                     f"p95 ≈ {why['p95_s_at_full_use']} s")
    lines += [f"[load]   tried: {t}" for t in why["tried"]]
    return lines


def measure(args: argparse.Namespace, name: str, dialogues: list[str], extra: list[str]) -> dict:
    """One variant: launch the app (or use --url), single-user reference, then the users for --seconds."""
    warmup = args.warmup if args.warmup is not None else min(30.0, args.seconds / 4)
    log_path = Path(tempfile.gettempdir()) / f"workbench-load-{os.getpid()}-{name}.log"
    with contextlib.ExitStack() as stack:
        launch_started = time.monotonic()
        if args.url:
            url, pid = args.url, None
        else:
            url, pid = stack.enter_context(launched_app(variant_models(args.models, name), extra, log_path,
                                                        env_extra=VARIANTS[name]))
        ready_s = time.monotonic() - launch_started
        sampler = RssSampler(pid)
        sampler.start()
        print(f"[load] {name}: app at {url} ready in {ready_s:.1f} s; single-user reference on {len(dialogues)} "
              "dialogues", flush=True)
        reference, single = reference_outputs(url, dialogues, args.timeout)
        status = server_status(url)
        print(f"[load] {name}: single-user latency p50 {statistics.median(single):.3f} s; {args.users} users for "
              f"{args.seconds:.0f} s ...", flush=True)
        load_before = os.getloadavg()
        server_cpu = process_cpu_seconds(pid)
        records, started, stopped, clients_cpu = run_users(args, url, dialogues, reference, sampler.t0)
        server_cpu = None if server_cpu is None or (now := process_cpu_seconds(pid)) is None else now - server_cpu
        load_start, load_end = started - sampler.t0, stopped - sampler.t0
        load_after = os.getloadavg()
        time.sleep(1.5)  # one more memory sample after the load
        sampler.stop()
    return {"environment": VARIANTS[name], "engine": ENGINE_VARIANTS.get(name, "config"), "users": args.users,
            "server": {"ready_s": round(ready_s, 1), "pid_sampled": pid is not None, "status_html": status},
            "single_user": {"latency_s": {"p50": _r(statistics.median(single)), "max": _r(max(single))}},
            "reference": reference, "load": summarize(records, sampler.samples, load_start, load_end, warmup),
            "cpu": cpu_accounting(server_cpu, clients_cpu, load_end - load_start,
                                  sum(r["status"] in ("ok", "mismatch") for r in records)),
            "machine_load_avg": {"before": [round(x, 2) for x in load_before],
                                 "after": [round(x, 2) for x in load_after]},
            "rss_mb_over_time": sampler.samples, "failures": [r for r in records if r["status"] != "ok"][:50]}


def comparison(variants: dict) -> dict | None:
    """Batched vs unbatched: throughput ratio and the batched p95 against their goals; and whether both servers gave
    the same single-user answers (they must: batching may not change an answer). With the `ctranslate2` variant, its
    ratio to the unbatched (PyTorch) server and its p95 against the same goals under `ctranslate2` (its answers are
    the engine's own, int8 on CPU: they are checked against its own single-user answers, not the PyTorch ones)."""
    if "unbatched" not in variants or not {"batched", "ctranslate2"} & set(variants):
        return None
    u = variants["unbatched"]["load"]

    def against_goals(name: str) -> dict:
        load = variants[name]["load"]
        ratio = load["throughput_rps"] / u["throughput_rps"] if u["throughput_rps"] else None
        p95 = load["latency_s"]["p95"]
        met = ratio is not None and ratio >= GOALS["throughput_ratio"] and p95 is not None and p95 <= GOALS["p95_s"]
        out = {"throughput_ratio": _r(ratio), "p95_s": p95, "met": bool(met and load["passed"] and u["passed"])}
        if p95 is not None and p95 > GOALS["p95_s"]:
            out["why_p95"] = p95_why(variants[name], variants[name].get("users"))
        return out

    out: dict = {"goals": GOALS}
    if "batched" in variants:
        batched = against_goals("batched")
        same = variants["batched"]["reference"] == variants["unbatched"]["reference"]
        out.update(throughput_ratio=batched["throughput_ratio"], batched_p95_s=batched["p95_s"],
                   same_answers_both_servers=same, met=batched["met"] and same)
        if batched.get("why_p95"):
            out["why_p95"] = batched["why_p95"]
    if "ctranslate2" in variants:
        out["ctranslate2"] = against_goals("ctranslate2")
    return out


def run(args: argparse.Namespace) -> dict:
    from benchmarks.common import machine
    from workbench import data

    rows = data.load_dialogues(data.DEMO, "test")
    sample = random.Random(args.seed).sample(rows, min(args.dialogues, len(rows)))
    dialogues = [r["dialogue"] for r in sample]
    warmup = args.warmup if args.warmup is not None else min(30.0, args.seconds / 4)
    extra = []
    if args.concurrency:
        extra += ["--concurrency", str(args.concurrency)]
    if args.max_queue:
        extra += ["--max-queue", str(args.max_queue)]
    variants = {name: measure(args, name, dialogues, extra) for name in args.variants}
    main_variant = variants.get("batched") or next(iter(variants.values()))
    report = {
        "benchmark": "load", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m benchmarks.load " + " ".join(args.argv),
        "settings": {"models": None if args.url else shown_path(args.models), "url": args.url, "users": args.users,
                     "seconds": args.seconds, "warmup_s": warmup, "dialogues": len(dialogues), "seed": args.seed,
                     "request": {"decoding": "greedy", "max_new_tokens": COMPARE_ARGS[2]},
                     "server_args": extra or "defaults (python -m workbench)", "variants": list(variants),
                     "client_processes": min(args.client_processes, args.users)},
        "machine": {**machine(), "platform": platform.platform()},
        "comparison": comparison(variants),
        "variants": {name: {k: v for k, v in variant.items() if k not in ("reference", "rss_mb_over_time")}
                     for name, variant in variants.items()},
        # the app as it serves by default (batched), in the fields earlier reports had
        "server": main_variant["server"],
        "single_user": {**main_variant["single_user"],
                        "outputs": [{"fname": r["fname"], **o} for r, o in zip(sample, main_variant["reference"])]},
        "load": main_variant["load"],
        "rss_mb_over_time": main_variant["rss_mb_over_time"],
        "failures": main_variant["failures"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    report = run(args)
    print(f"[load] machine: CPU kind {report['machine']['cpu_kind']}, {report['machine']['cpus']} CPUs")
    for name, variant in report["variants"].items():
        s = variant["load"]
        lat, mem = s["latency_s"], s["memory"] or {}
        print(f"[load] {name}: {s['requests']} requests from {args.users} users in {args.seconds:.0f} s: {s['ok']} "
              f"identical to single-user, {s['mismatch']} different (cross-talk), {s['rejected']} rejected (queue "
              f"full), {s['error']} errors; load average {variant['machine_load_avg']['after'][0]}")
        print(f"[load] {name}: latency p50 {lat['p50']} s, p95 {lat['p95']} s, max {lat['max']} s; throughput "
              f"{s['throughput_rps']} requests/s")
        if mem:
            print(f"[load] {name}: server RSS {mem['before_load_mb']} MB before, {mem['after_warmup_mb']} MB after "
                  f"warm-up, {mem['end_mb']} MB at the end (max {mem['max_mb']}; trend "
                  f"{mem['trend_after_warmup_mb_per_min']} MB/min; flat: {mem['flat_after_warmup']})")
        cpu = variant.get("cpu") or {}
        if cpu.get("server_cpu_s") is not None:
            print(f"[load] {name}: CPU during the load: server {cpu['server_cores']} cores "
                  f"({cpu['server_ms_per_request']} ms per request), load generator {cpu['clients_cores']} cores "
                  f"({cpu['clients_ms_per_request']} ms per request), {cpu['busy_share']:.0%} of {cpu['cpus']} CPUs")
    cmp = report["comparison"] or {}
    if "met" in cmp:
        print(f"[load] batched / unbatched throughput {cmp['throughput_ratio']}× "
              f"(goal ≥ {GOALS['throughput_ratio']:g}×), "
              f"batched p95 {cmp['batched_p95_s']} s (goal ≤ {GOALS['p95_s']:g} s), same answers on both servers: "
              f"{cmp['same_answers_both_servers']} -> {'PASS' if cmp['met'] else 'MISS'}")
    if cmp.get("why_p95"):
        print("\n".join(p95_why_lines("batched", cmp["why_p95"])))
    if "ctranslate2" in cmp:
        c = cmp["ctranslate2"]
        print(f"[load] ctranslate2 (batched) / unbatched throughput {c['throughput_ratio']}× "
              f"(goal ≥ {GOALS['throughput_ratio']:g}×), p95 {c['p95_s']} s (goal ≤ {GOALS['p95_s']:g} s) -> "
              f"{'PASS' if c['met'] else 'MISS'}")
        if c.get("why_p95"):
            print("\n".join(p95_why_lines("ctranslate2", c["why_p95"])[:2]))
    print(f"[load] report: {args.out}")
    passed = all(v["load"]["passed"] for v in report["variants"].values())
    return 0 if passed and cmp.get("same_answers_both_servers", True) else 1


if __name__ == "__main__":
    sys.exit(main())
