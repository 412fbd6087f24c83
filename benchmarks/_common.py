"""Helpers shared by the benchmark scripts (not part of the package).

BLAS reporting, the OpenBLAS environment switch, a LocalCluster with the
issue's shape, a scheduler plugin that records every graph the client sends,
a worker-side peak-RSS poller, and table printing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

def timing_parser(description, iters):
    """The options of the per-iteration cost benchmarks (``bench_weights``,
    ``bench_missing``): --small, --iters, --repeat, --chunks."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="N / 10: a quick run")
    parser.add_argument("--iters", type=int, default=iters, help=f"EM iterations timed (default {iters})")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--chunks", type=int, default=8, help="row chunks (default 8)")
    return parser


def per_iteration_interleaved(fits, n_iter, repeat, passes=None):
    """Best seconds per EM iteration of every fit in ``fits`` (name ->
    ``fit(max_iter) -> model``): (fit with ``max_iter=n_iter+1``  -  fit
    with ``max_iter=1``) / n_iter, each the best of ``repeat`` runs, the fits
    interleaved run by run so that all see the same machine load, after one
    warm-up fit each.  ``passes(model, max_iter)``, when given, checks each
    timed model (e.g. its number of passes).

    Returns
    -------
    per_iter : dict name -> seconds
    models : dict name -> the last ``max_iter=n_iter+1`` model
    """
    best = {(name, iters): float("inf") for name in fits for iters in (1, n_iter + 1)}
    models = {}
    for fit in fits.values():  # warm-up: first-call costs on the workers
        fit(1)
    for _ in range(repeat):
        for iters in (n_iter + 1, 1):
            for name, fit in fits.items():
                tic = time.perf_counter()
                model = fit(iters)
                best[name, iters] = min(best[name, iters], time.perf_counter() - tic)
                if passes is not None:
                    passes(model, iters)
                if iters > 1:
                    models[name] = model
    return {name: (best[name, n_iter + 1] - best[name, 1]) / n_iter for name in fits}, models


# Set on some machines for old OpenBLAS builds; they pin a slower kernel.
OPENBLAS_PIN_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def openblas_pins():
    """The OpenBLAS kernel-pinning variables set in this process's environment."""
    return {name: os.environ[name] for name in OPENBLAS_PIN_VARS if name in os.environ}


def blas_info():
    """One line per BLAS/OpenMP library loaded here: api, kernel, threads."""
    import numpy  # noqa: F401  (loads numpy's BLAS)
    import scipy.linalg  # noqa: F401  (and scipy's)
    from threadpoolctl import threadpool_info

    return [
        f"{i['internal_api']} {i.get('version') or ''} kernel={i.get('architecture')} threads={i['num_threads']}"
        for i in threadpool_info()
    ]


def _worker_blas():
    from threadpoolctl import threadpool_info

    return [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()]


def check_worker_blas(client):
    """Each worker's BLAS libraries; raises if one uses more than one thread."""
    client.run(lambda: __import__("scipy.linalg") and None)  # load scipy's BLAS too
    info = client.run(_worker_blas)
    for worker, libs in info.items():
        for api, arch, threads in libs:
            if api in ("openblas", "mkl", "blis") and threads != 1:
                raise RuntimeError(f"worker {worker} runs {api} with {threads} threads; expected 1")
    return info


def rerun_both_ways(argv, flag="--blas-env"):
    """Run this script twice in subprocesses: OpenBLAS pins as set, then unset.

    Returns the list of exit codes.
    """
    codes = []
    for mode in ("asis", "unset"):
        env = dict(os.environ)
        if mode == "unset":
            for name in OPENBLAS_PIN_VARS:
                env.pop(name, None)
        cmd = [sys.executable, sys.argv[0], *argv, flag, mode]
        print(f"\n##### {flag} {mode}: {' '.join(cmd[1:])}", flush=True)
        codes.append(subprocess.call(cmd, env=env))
    return codes


def load_average():
    """1-minute load average: on a shared machine, read timings next to it."""
    return os.getloadavg()[0]


def wait_for_quiet(max_seconds, threshold=0.7):
    """Wait (up to ``max_seconds``) until the 1-minute load average is below
    ``threshold``: on a shared machine, timings taken under load measure the
    other processes as much as this one."""
    deadline = time.time() + max_seconds
    while load_average() >= threshold and time.time() < deadline:
        time.sleep(10)
    return load_average()


def reexec_without_pins():
    """Run this very command again with the OpenBLAS pins removed from its
    environment (they are read when OpenBLAS loads, so it takes a new process)."""
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_PIN_VARS}
    return subprocess.call([sys.executable, *sys.argv], env=env)


def print_header(title):
    import dask
    import distributed
    import numpy as np

    print(f"== {title}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, dask {dask.__version__}, "
          f"distributed {distributed.__version__}, cores {os.cpu_count()}, load average {load_average():.2f}")
    pins = openblas_pins()
    print("OpenBLAS pins:", pins if pins else "none set")
    for line in blas_info():
        print("  client BLAS:", line)
    sys.stdout.flush()


def start_cluster(n_workers=2, threads_per_worker=1, memory_limit="auto"):
    """LocalCluster of worker processes (distributed sets *_NUM_THREADS=1 in them)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=":0",
        host="127.0.0.1",
    )
    return cluster, Client(cluster)


# --------------------------------------------------------------------------
# What the scheduler receives: one record per graph submitted
# --------------------------------------------------------------------------


def key_prefix(key):
    """A key's name less its token: 'daskgmm-em-map' for ('daskgmm-em-map-<hex>', 3),
    'from-zarr' for ('from-zarr-<hex>', 0, 0).  (dask's key_split stops at
    characters such as '|' in 'daskgmm-init-kmeans||-map-<hex>'.)"""
    name = key[0] if isinstance(key, tuple) else str(key)
    return re.sub(r"-[0-9a-f]{8,}$", "", name)


class GraphRecorder:
    """Scheduler plugin: for each ``update_graph``, the number of tasks that
    entered the scheduler and how many of them fall in each task group."""

    name = "daskgmm-bench-graph-recorder"

    def __init__(self):
        self.graphs = []

    async def start(self, scheduler):
        self.graphs = []

    def update_graph(self, scheduler, *, tasks=(), keys=(), **kwargs):
        groups = {}
        for key in tasks:
            prefix = key_prefix(key)
            groups[prefix] = groups.get(prefix, 0) + 1
        self.graphs.append({"n_tasks": len(tasks), "groups": groups, "time": time.time()})


def install_graph_recorder(client):
    from distributed.diagnostics.plugin import SchedulerPlugin

    plugin_cls = type("GraphRecorderPlugin", (GraphRecorder, SchedulerPlugin), {})
    client.register_plugin(plugin_cls())


def recorded_graphs(client, clear=True):
    def fetch(dask_scheduler, clear=clear):
        plugin = dask_scheduler.plugins[GraphRecorder.name]
        out = list(plugin.graphs)
        if clear:
            plugin.graphs.clear()
        return out

    return client.run_on_scheduler(fetch)


# --------------------------------------------------------------------------
# Peak memory of each worker process, polled inside the worker
# --------------------------------------------------------------------------


def _start_rss_poller(dask_worker, interval=0.02):
    import psutil

    state = {"peak": 0, "stop": False}
    proc = psutil.Process()

    def poll():
        while not state["stop"]:
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            time.sleep(interval)

    dask_worker._daskgmm_rss = state
    threading.Thread(target=poll, daemon=True, name="daskgmm-rss-poller").start()
    return proc.memory_info().rss


def _stop_rss_poller(dask_worker):
    state = dask_worker._daskgmm_rss
    state["stop"] = True
    return state["peak"]


class PeakWorkerMemory:
    """Context manager: peak RSS of every worker process over the block.

    A thread inside each worker polls its own RSS every 20 ms (so no sample
    is lost to the client's round trips); ``.start`` holds the RSS at entry
    and ``.peak`` the maximum seen, per worker address.
    """

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        self.start = self.client.run(_start_rss_poller)
        return self

    def __exit__(self, *exc):
        self.peak = self.client.run(_stop_rss_poller)
        return False


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def print_table(headers, rows):
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j and _numeric(c) else c.ljust(w) for c, w in zip(row, widths)))
        if j == 0:
            print(line)
    print(line, flush=True)


def _numeric(text):
    try:
        float(text.rstrip("x%"))
        return True
    except ValueError:
        return False


def mib(nbytes):
    return f"{nbytes / 2**20:.0f}"
