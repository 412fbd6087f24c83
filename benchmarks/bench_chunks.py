"""An EM pass over many small chunks against the floor of a Dask pass (issue #24 item 4).

A pass makes one map task per worker thread (``_engine.passes.plan_batches``),
so the scheduler's cost does not grow with the number of chunks; what does
is the work each task does per chunk.  This benchmark times, on a
LocalCluster of 2 workers x 1 thread (distributed's defaults), rows of
1,000 x D=8 per chunk, K=8 'full':

* ``sum``: ``X.sum(axis=0).compute()`` on the same persisted array, the
  floor of any Dask pass over its chunks (best of ``--repeat``);
* ``em``: seconds per EM iteration of ``GaussianMixture.fit`` started from
  given parameters (no initialisation pass), ``tol=0``, the median of
  ``history_``'s ``seconds`` less the first iteration (one pass and the
  client's M-step each);

at 250, 1,000 and 4,000 chunks, and prints ``em / sum`` beside the targets:
<= 0.2 s per pass at 1,000 chunks, <= 0.5 s at 4,000.

With ``--before REF`` the same measurements run on the code of git ref
``REF`` too (exported with ``git archive`` to a temporary folder), each
tree in its own process and cluster, the two alternating ``--rounds`` times
so that both see the same machine load; each figure is the best round.

``--task`` times instead, in this process on one thread, the work of one
map task over 32 chunks of 1,000 x 8 (``_engine.passes._apply_batch`` of
the EM pass): chunk by chunk, and joined into one block
(``join_chunks``), best of 20; robust to a loaded machine, where the
cluster figures are not (they print the load average beside them).

Run::

    python benchmarks/bench_chunks.py --task             # a few seconds
    python benchmarks/bench_chunks.py                    # this tree, ~1 min
    python benchmarks/bench_chunks.py --before main      # main's code beside it, ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import REPO, load_average

TARGETS = {1000: 0.2, 4000: 0.5}  # seconds per EM pass


def _mixture_block(block, block_id=None, k=8):
    """Rows of a mixture of ``k`` well separated Gaussians, seeded per chunk."""
    import numpy as np

    rng = np.random.default_rng(block_id[0])
    n, d = block.shape
    centres = np.random.default_rng(12345).normal(scale=6.0, size=(k, d))
    return centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))


def measure(chunk_counts, rows, d, k, iters, repeat):
    """Per chunk count: (seconds of X.sum, seconds per EM pass), in this process's daskgmm."""
    import numpy as np

    import dask.array as da
    from distributed import Client, LocalCluster, wait

    import daskgmm
    from daskgmm import GaussianMixture

    out = {"daskgmm": os.path.dirname(daskgmm.__file__), "results": {}}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        rng = np.random.default_rng(0)
        centres = np.random.default_rng(12345).normal(scale=6.0, size=(k, d))
        # Start from parameters near the truth, the same for both trees.
        means_init = centres + rng.normal(scale=0.5, size=(k, d))
        precisions_init = np.stack([np.eye(d)] * k)
        weights_init = np.full(k, 1.0 / k)
        for n_chunks in chunk_counts:
            template = da.zeros((n_chunks * rows, d), chunks=(rows, d))
            X = template.map_blocks(_mixture_block, k=k, dtype=np.float64).persist()
            wait(X)
            X.sum(axis=0).compute()  # warm-up
            floor = []
            for _ in range(repeat):
                tic = time.perf_counter()
                X.sum(axis=0).compute()
                floor.append(time.perf_counter() - tic)
            passes = []
            for _ in range(repeat):
                model = GaussianMixture(
                    k, covariance_type="full", tol=0.0, max_iter=iters + 1, weights_init=weights_init,
                    means_init=means_init, precisions_init=precisions_init,
                ).fit(X)
                passes.append(statistics.median(r["seconds"] for r in model.history_[1:]))
            out["results"][n_chunks] = {"sum": min(floor), "em": min(passes), "load": load_average()}
            del X
            client.cancel(template)
    return out


def time_task(n_chunks=32, rows=1000, d=8, k=8, repeat=20):
    """Best seconds of one EM map task over ``n_chunks`` chunks, chunk by chunk and joined."""
    import functools

    import numpy as np
    from threadpoolctl import threadpool_limits

    from daskgmm import _blocks
    from daskgmm._engine.em import _em_chunk, _merge_columns
    from daskgmm._engine.passes import Box, _apply_batch
    from daskgmm._families import GAUSSIAN

    blocks = [_mixture_block(np.empty((rows, d)), block_id=(i, 0), k=k) for i in range(n_chunks)]
    centres = np.random.default_rng(12345).normal(scale=6.0, size=(k, d))
    model = _blocks.Model("full", np.log(np.full(k, 1 / k)), centres + 0.3, np.stack([np.eye(d)] * k), np.zeros(k))
    payload = Box((GAUSSIAN, ((model, None),), False))
    combine = functools.partial(_merge_columns, GAUSSIAN.merge)
    offsets = [i * rows for i in range(n_chunks)]
    best = {}
    with threadpool_limits(1):
        for _ in range(repeat):
            for join in (False, True):
                tic = time.perf_counter()
                _apply_batch(_em_chunk, combine, blocks, payload, offsets, join_chunks=join)
                best[join] = min(best.get(join, float("inf")), time.perf_counter() - tic)
    return best


def _export(ref):
    folder = tempfile.mkdtemp(prefix="daskgmm-bench-chunks-")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "daskgmm"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def _run_tree(tree, args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, os.path.dirname(os.path.abspath(__file__))]))
    cmd = [sys.executable, os.path.abspath(__file__), "--measure", "--chunks", *map(str, args.chunks),
           "--iters", str(args.iters), "--repeat", str(args.repeat)]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--rows", type=int, default=1000, help="rows per chunk (default 1000)")
    parser.add_argument("--iters", type=int, default=4, help="EM passes timed per fit (default 4)")
    parser.add_argument("--repeat", type=int, default=1, help="fits and sums per chunk count (default 1)")
    parser.add_argument("--task", action="store_true", help="time one map task's work in this process")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds with --before (default 1)")
    parser.add_argument("--before", metavar="REF", help="also time the code of this git ref")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.chunks, args.rows, 8, 8, args.iters, args.repeat)))
        return
    if args.task:
        best = time_task(rows=args.rows)
        print(f"one EM map task, 32 chunks of {args.rows} x 8, K=8 full, one thread, load average "
              f"{load_average():.2f}: chunk by chunk {1e3 * best[False]:.1f} ms, joined {1e3 * best[True]:.1f} ms")
        return

    import dask
    import distributed
    import numpy as np

    print(f"== EM pass over many small chunks: rows of {args.rows} x 8, K=8 full, 2 workers x 1 thread")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, dask {dask.__version__}, "
          f"distributed {distributed.__version__}, cores {os.cpu_count()}, load average {load_average():.2f}")
    trees = {"this tree": str(REPO)}
    if args.before:
        trees = {f"before ({args.before})": _export(args.before), **trees}
    best = {}
    for round_ in range(args.rounds):
        for name, tree in trees.items():
            result = _run_tree(tree, args)
            for n_chunks, figures in result["results"].items():
                key = (name, int(n_chunks))
                if key not in best or figures["em"] < best[key]["em"]:
                    best[key] = figures
            print(f"  round {round_ + 1} {name}: done, load average {load_average():.2f}", flush=True)
    print(f"{'code':<22}{'chunks':>7}{'sum s':>9}{'EM pass s':>11}{'pass/sum':>10}{'ms/chunk':>10}"
          f"{'target s':>10}{'load':>7}")
    for (name, n_chunks), figures in sorted(best.items(), key=lambda item: (item[0][1], item[0][0])):
        target = TARGETS.get(n_chunks)
        verdict = "" if target is None else f"{target:>6.2f} {'ok' if figures['em'] <= target else 'MISS'}"
        print(f"{name:<22}{n_chunks:>7}{figures['sum']:>9.3f}{figures['em']:>11.3f}"
              f"{figures['em'] / figures['sum']:>10.1f}{1e3 * figures['em'] / n_chunks:>10.3f}"
              f"{verdict:>10}{figures['load']:>7.2f}")


if __name__ == "__main__":
    main()
