"""Out-of-core fit: a zarr store several times the cluster's memory, streamed.

1. Writes a zarr store of a K-component Gaussian mixture, chunk by chunk (the
   writer holds one chunk at a time; its own peak RSS is printed), ``--factor``
   times the cluster's total memory limit (default 4 x 2 workers x 500 MiB).
2. On a LocalCluster of 2 worker processes x 1 thread with ``memory_limit``
   each, checks that ``persist='auto'`` chooses streaming by itself, then fits
   ``GaussianMixture(persist=False)`` to convergence (k-means|| init).
3. Reports the time, passes, throughput (bytes read per pass x passes / time),
   the peak RSS of each worker (polled inside the worker every 20 ms) against
   its limit, the cluster total from distributed's ``MemorySampler``, and
   proves that it streamed: every pass's graph holds one zarr read task per
   chunk, the workers ran ``passes x chunks`` zarr reads, no graph was a
   persist, and nothing stays in worker memory after the fit.
4. A one-iteration fit with ``persist='auto'`` shows the same streaming.
5. Deletes the store (unless ``--keep``).

The store is read through the OS page cache when it fits in RAM (on the
24 GiB benchmark machine it does), so the throughput is that of zarr +
the EM arithmetic, not of a cold disk.

Run::

    python benchmarks/bench_out_of_core.py            # >= 4 GB store
    python benchmarks/bench_out_of_core.py --small    # 512 MiB store: a quick check of the mechanics
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings

import _common
import numpy as np

import dask
import dask.array as da
from dask.utils import parse_bytes
from distributed import get_task_stream
from distributed.diagnostics import MemorySampler

from daskgmm import GaussianMixture
from daskgmm import _engine


def true_mixture(d, k, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(k, d))
    factors = rng.normal(size=(k, d, d)) * (0.5 / np.sqrt(d)) + np.eye(d)
    weights = rng.dirichlet(np.full(k, 5.0))
    return weights, means, factors


def write_store(path, n_rows, d, k, rows_per_chunk, dtype, seed=0):
    """Write the store chunk by chunk; returns seconds taken."""
    import zarr

    weights, means, factors = true_mixture(d, k, seed)
    z = zarr.create_array(
        store=path, shape=(n_rows, d), chunks=(rows_per_chunk, d), dtype=dtype, compressors=None, overwrite=True
    )
    tic = time.perf_counter()
    for i, start in enumerate(range(0, n_rows, rows_per_chunk)):
        stop = min(start + rows_per_chunk, n_rows)
        rng = np.random.default_rng([seed, i])
        labels = rng.choice(k, size=stop - start, p=weights)
        block = rng.standard_normal((stop - start, d))
        for j in range(k):
            rows = labels == j
            block[rows] = block[rows] @ factors[j].T + means[j]
        z[start:stop] = block.astype(dtype, copy=False)
    return time.perf_counter() - tic


def pick_directory(requested, needed):
    candidates = [requested] if requested else [tempfile.gettempdir(), "/work", os.getcwd()]
    for directory in candidates:
        if directory and os.path.isdir(directory):
            free = shutil.disk_usage(directory).free
            print(f"  disk: {directory} has {free / 1e9:.1f} GB free, store needs {needed / 1e9:.2f} GB")
            if free > 1.5 * needed:
                return directory
    raise SystemExit(f"no directory among {candidates} has room for a {needed / 1e9:.1f} GB store")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a 512 MiB store: checks the mechanics, not the 4x claim")
    parser.add_argument("--memory-limit", default="500MiB", help="per worker")
    parser.add_argument("--factor", type=float, default=4.0, help="store size / total memory limit")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--components", type=int, default=4)
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--chunk-mib", type=float, default=16.0, help="bytes per zarr chunk")
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--dir", default=None, help="where to write the store (default: a temp dir with room)")
    parser.add_argument("--keep", action="store_true", help="do not delete the store at the end")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before fitting, wait up to this long for the 1-minute load average to fall below 0.7")
    args = parser.parse_args(argv)

    n_workers = 2
    limit = parse_bytes(args.memory_limit)
    itemsize = np.dtype(args.dtype).itemsize
    d, k = args.features, args.components
    target_bytes = 512 * 2**20 if args.small else args.factor * n_workers * limit
    rows_per_chunk = int(args.chunk_mib * 2**20 // (d * itemsize))
    n_rows = int(-(-target_bytes // (d * itemsize)))
    store_bytes = n_rows * d * itemsize

    _common.print_header("out-of-core fit from zarr")
    print(f"  store: {n_rows:,} x {d} {args.dtype} = {store_bytes / 2**20:,.0f} MiB in "
          f"{-(-n_rows // rows_per_chunk)} chunks of {rows_per_chunk:,} rows; cluster memory "
          f"{n_workers} x {args.memory_limit} = {n_workers * limit / 2**20:,.0f} MiB "
          f"(store / memory = {store_bytes / (n_workers * limit):.2f})")
    directory = pick_directory(args.dir, store_bytes)
    path = tempfile.mkdtemp(prefix="daskgmm-ooc-", dir=directory) + "/data.zarr"
    try:
        seconds = write_store(path, n_rows, d, k, rows_per_chunk, args.dtype)
        writer_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"  wrote {path} in {seconds:.1f} s ({store_bytes / seconds / 1e9:.2f} GB/s); "
              f"writer process peak RSS {writer_peak / 2**20:.0f} MiB")
        if args.wait_quiet:
            print(f"  load average {_common.wait_for_quiet(args.wait_quiet):.2f} after waiting for quiet")
        ok = fit_and_report(path, args, n_workers, limit, store_bytes)
    finally:
        if args.keep:
            print(f"  kept {path}")
        else:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
            print(f"  deleted {os.path.dirname(path)}")
    return 0 if ok else 1


def _is_pass(graph):
    """A pass over the data: a daskgmm map over the chunks (not a row fetch)."""
    return any(p.startswith("daskgmm-") and p.endswith("-map") for p in graph["groups"])


def fit_and_report(path, args, n_workers, limit, store_bytes):
    # Workers get daskgmm's recommended allocator settings (README, Performance notes).
    with dask.config.set(_engine.worker_environ_config()):
        cluster, client = _common.start_cluster(n_workers=n_workers, threads_per_worker=1, memory_limit=args.memory_limit)
    try:
        _common.check_worker_blas(client)
        _common.install_graph_recorder(client)
        dX = da.from_zarr(path)
        n_chunks = dX.numblocks[0]
        read_group = _common.key_prefix((dX.name, 0, 0))

        budget = _engine.memory_budget(client)
        persisted = _engine.should_persist(dX, "auto")
        print(f"  persist='auto': data {store_bytes / 2**20:,.0f} MiB vs budget {budget / 2**20:,.0f} MiB "
              f"-> {'PERSIST' if persisted else 'stream'}")
        ok = not persisted

        iteration_seconds = []
        sampler = MemorySampler()
        _common.recorded_graphs(client)  # clear
        with _common.PeakWorkerMemory(client) as peak, sampler.sample("fit", client=client, interval=0.1), \
                get_task_stream(client) as stream:
            gmm = GaussianMixture(
                args.components, persist=False, random_state=0, max_iter=args.max_iter, tol=args.tol
            )
            tic = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gmm._fit(dX, callbacks=[lambda info: iteration_seconds.append(info["seconds"])])
            fit_seconds = time.perf_counter() - tic
        graphs = _common.recorded_graphs(client)
        left_on_workers = sum(len(keys) for keys in client.has_what().values())

        passes = gmm.n_passes_
        em_seconds = sum(iteration_seconds)
        print(f"\nfit: {fit_seconds:.1f} s, {passes} passes ({gmm.n_iter_} EM iterations + {passes - gmm.n_iter_} "
              f"for initialisation), converged={gmm.converged_}, lower bound {gmm.lower_bound_:.6f}")
        weights, means, _ = true_mixture(args.features, args.components)
        error = max(np.min(np.abs(gmm.means_[:, None, :] - means[None]).max(axis=2), axis=0))
        print(f"  largest distance from a true mean to its nearest fitted mean: {error:.2e}")

        rows = [
            ["whole fit", f"{fit_seconds:.1f}", passes, f"{fit_seconds / passes:.2f}",
             f"{store_bytes * passes / fit_seconds / 1e9:.2f}"],
            ["EM iterations", f"{em_seconds:.1f}", gmm.n_iter_, f"{em_seconds / max(gmm.n_iter_, 1):.2f}",
             f"{store_bytes * gmm.n_iter_ / em_seconds / 1e9:.2f}" if em_seconds else "-"],
        ]
        _common.print_table(["", "seconds", "passes", "s/pass", "GB/s"], rows)

        rows = []
        for worker, peak_rss in sorted(peak.peak.items()):
            rows.append([worker, _common.mib(peak.start[worker]), _common.mib(peak_rss), _common.mib(limit),
                         f"{peak_rss / limit:.0%}", "below" if peak_rss < limit else "OVER"])
            ok = ok and peak_rss < limit
        print("\nworker memory (RSS, MiB), polled every 20 ms inside each worker:")
        _common.print_table(["worker", "at start", "peak", "limit", "peak/limit", ""], rows)
        cluster_peak = sampler.to_pandas()["fit"].max()
        print(f"  MemorySampler (cluster process memory, 0.1 s): peak {cluster_peak / 2**20:,.0f} MiB of "
              f"{n_workers * limit / 2**20:,.0f} MiB; store is {store_bytes / 2**20:,.0f} MiB")

        pass_graphs = [g for g in graphs if _is_pass(g)]
        reads_per_pass = sorted({g["groups"].get(read_group, 0) for g in pass_graphs})
        # A persist of X submits exactly its chunk reads and nothing else.
        persist_graphs = [g for g in graphs if g not in pass_graphs and g["groups"].get(read_group) == n_chunks]
        other_reads = sum(g["groups"].get(read_group, 0) for g in graphs if g not in pass_graphs)
        reads_run = sum(1 for t in stream.data if _common.key_prefix(t["key"]) == read_group)
        streamed = (
            len(pass_graphs) == passes
            and reads_per_pass == [n_chunks]
            and not persist_graphs
            and reads_run >= passes * n_chunks
            and left_on_workers == 0
        )
        print(f"\nstreaming: {len(pass_graphs)} pass graphs for {passes} passes; zarr read tasks per pass graph "
              f"{reads_per_pass} (chunks: {n_chunks}); zarr reads run by workers {reads_run} "
              f"(passes x chunks = {passes * n_chunks}, + {other_reads} in {len(graphs) - len(pass_graphs)} other "
              f"graph(s): rows fetched by the initialisation); persist graphs {len(persist_graphs)}; "
              f"keys left on workers after the fit {left_on_workers} -> {'STREAMED' if streamed else 'NOT STREAMED'}")
        ok = ok and streamed

        # persist='auto' on its own: one iteration from the fitted parameters.
        _common.recorded_graphs(client)
        with _common.PeakWorkerMemory(client) as peak_auto:
            auto = GaussianMixture(
                args.components, max_iter=1, tol=0.0, weights_init=gmm.weights_, means_init=gmm.means_,
                precisions_init=gmm.precisions_,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                auto.fit(dX)
        graphs = [g for g in _common.recorded_graphs(client) if _is_pass(g)]
        auto_streamed = not auto.persisted_ and [g["groups"].get(read_group, 0) for g in graphs] == [n_chunks]
        print(f"persist='auto' fit: persisted_={auto.persisted_}, {auto.n_passes_} pass(es), zarr reads in its graph "
              f"{[g['groups'].get(read_group, 0) for g in graphs]}, peak worker RSS "
              f"{max(peak_auto.peak.values()) / 2**20:.0f} MiB -> {'STREAMED' if auto_streamed else 'NOT STREAMED'}")
        ok = ok and auto_streamed and max(peak_auto.peak.values()) < limit
        print(f"\nresult: {'PASS' if ok else 'FAIL'} (load average now {_common.load_average():.2f})")
        return ok
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
