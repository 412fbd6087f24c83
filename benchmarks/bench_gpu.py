"""GPU and scale-out benchmarks, for a machine with a CUDA GPU and many cores.

Not run in CI (no GPU there).  Two parts:

``--part gpu``
    A Dask array of CuPy chunks (the data born on the GPU, chunk by chunk),
    N=10,000,000, D=32, K=32, float32, full covariance, fitted by daskgmm
    through the same array-API block code as on the CPU; seconds per
    iteration next to scikit-learn's array-API path on the same GPU
    (``SCIPY_ARRAY_API=1``, ``sklearn.config_context(array_api_dispatch=True)``
    with CuPy arrays, or PyTorch CUDA tensors with ``--sk-array torch``) and
    scikit-learn on the CPU (NumPy, all cores).  Same inits, ``tol=0``, a fixed
    number of iterations; seconds per iteration = (fit(n+1) - fit(1)) / n.

``--part scaling``
    Strong scaling of a LocalCluster with 1, 2, 4, 8, 16 worker processes x 1
    thread on N=20,000,000, D=16, K=16 float64 full (data generated on the
    workers and persisted; same inits): seconds per iteration, speed-up over
    1 worker and parallel efficiency = t1 / (p * tp).

Needs, on the device machine::

    pip install -e .  cupy-cuda12x        # (and torch for --sk-array torch)
    python benchmarks/bench_gpu.py                     # both parts
    python benchmarks/bench_gpu.py --part gpu --small  # N / 10
"""

from __future__ import annotations

import os

# scikit-learn's array-API path needs SciPy's, switched on before SciPy loads.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import _common  # noqa: E402,F401  (puts the checkout on sys.path)
import numpy as np  # noqa: E402


def mixture_params(d, k, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(k, d))
    factors = rng.normal(size=(k, d, d)) * (0.5 / np.sqrt(d)) + np.eye(d)
    return means, factors


def _block(block_id, rows, d, k, seed, dtype, xp_name):
    """One chunk of the synthetic mixture, generated where it will live."""
    import importlib

    xp = importlib.import_module(xp_name)
    means, factors = mixture_params(d, k, seed)
    rng = np.random.default_rng([seed, block_id[0]])
    labels = rng.integers(k, size=rows)
    z = rng.standard_normal((rows, d))
    out = np.empty((rows, d))
    for j in range(k):
        sel = labels == j
        out[sel] = z[sel] @ factors[j].T + means[j]
    return xp.asarray(out.astype(dtype))


def synthetic(n, d, k, chunk_rows, dtype, xp_name="numpy", seed=0):
    """Dask array whose chunks are made by the workers (numpy or cupy)."""
    import importlib

    import dask.array as da

    xp = importlib.import_module(xp_name)
    chunks = [chunk_rows] * (n // chunk_rows) + ([n % chunk_rows] if n % chunk_rows else [])
    return da.map_blocks(
        lambda block_id=None, block_info=None: _block(
            block_id, block_info[None]["chunk-shape"][0], d, k, seed, dtype, xp_name
        ),
        chunks=(tuple(chunks), (d,)),
        dtype=dtype,
        meta=xp.empty((0, 0), dtype=dtype),
    )


def inits(X_sample, k, dtype, seed=1):
    """Means at sample rows, equal weights, the sample's precision for all."""
    rng = np.random.default_rng(seed)
    X_sample = np.asarray(X_sample, dtype=np.float64)
    means = X_sample[rng.choice(len(X_sample), k, replace=False)]
    precision = np.linalg.inv(np.cov(X_sample.T))
    return dict(
        weights_init=np.full(k, 1.0 / k, dtype=dtype),
        means_init=means.astype(dtype),
        precisions_init=np.repeat(precision[None], k, axis=0).astype(dtype),
    )


def per_iteration(fit, n_iter, repeat=1):
    """(best fit(n+1) - best fit(1)) / n, and the last model."""
    fit(1)  # warm-up
    t_n = t_1 = float("inf")
    model = None
    for _ in range(repeat):
        tic = time.perf_counter()
        model = fit(n_iter + 1)
        t_n = min(t_n, time.perf_counter() - tic)
        tic = time.perf_counter()
        fit(1)
        t_1 = min(t_1, time.perf_counter() - tic)
    return (t_n - t_1) / n_iter, model


def quiet_fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


# --------------------------------------------------------------------------
# Part 1: one GPU
# --------------------------------------------------------------------------


class _NumpyStandIn:
    """What part_gpu uses of CuPy, on NumPy: ``--cpu-stand-in`` checks the
    script's plumbing on a machine without a GPU."""

    @staticmethod
    def asnumpy(a):
        return np.asarray(a)

    @staticmethod
    def asarray(a):
        return np.asarray(a)

    class cuda:  # noqa: N801
        class Device:
            def synchronize(self):
                pass


def part_gpu(args):
    import dask
    from sklearn import config_context
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    from daskgmm import GaussianMixture

    if args.cpu_stand_in:
        cupy, xp_name, device = _NumpyStandIn, "numpy", "CPU stand-in (NumPy chunks)"
    else:
        import cupy

        xp_name = "cupy"
        device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    n = args.gpu_n // (10 if args.small else 1)
    d, k, dtype = 32, 32, "float32"
    print(f"\n== GPU: N={n:,} D={d} K={k} {dtype} full, {args.iters} iterations; {device}")
    dX = synthetic(n, d, k, args.gpu_chunk_rows, dtype, xp_name)
    with dask.config.set(scheduler="threads", num_workers=args.gpu_threads):
        dX = dX.persist()
        sample = cupy.asnumpy(dX[:100_000].compute())
        init = inits(sample, k, dtype)

        def fit_ours(max_iter):
            est = quiet_fit(GaussianMixture(k, tol=0.0, max_iter=max_iter, **init), dX)
            cupy.cuda.Device().synchronize()
            return est

        ours, ours_model = per_iteration(fit_ours, args.iters, args.repeat)
        X_gpu = dX.compute()  # one CuPy array for scikit-learn
    rows = [[f"daskgmm (Dask + {xp_name} chunks)", f"{ours:.3f}", "1.00", f"{ours_model.lower_bound_:.6f}"]]

    X_sk = X_gpu
    if args.sk_array == "torch":
        import torch

        X_sk = torch.from_dlpack(X_gpu)
    sk_init_gpu = {name: (cupy.asarray(v) if args.sk_array == "cupy" else torch.asarray(v, device="cuda"))
                   for name, v in init.items()}

    def fit_sk_gpu(max_iter):
        with config_context(array_api_dispatch=True):
            est = quiet_fit(SkGaussianMixture(k, tol=0.0, max_iter=max_iter, **sk_init_gpu), X_sk)
        cupy.cuda.Device().synchronize()
        return est

    try:
        if args.cpu_stand_in:
            raise RuntimeError("no GPU: --cpu-stand-in")
        sk_gpu, sk_gpu_model = per_iteration(fit_sk_gpu, args.iters, args.repeat)
        rows.append([f"scikit-learn array API ({args.sk_array}, 1 GPU)", f"{sk_gpu:.3f}", f"{sk_gpu / ours:.2f}",
                     f"{float(sk_gpu_model.lower_bound_):.6f}"])
    except Exception as exc:  # noqa: BLE001  (report and go on to the CPU run)
        rows.append([f"scikit-learn array API ({args.sk_array})", f"failed: {type(exc).__name__}: {exc}"[:80], "", ""])

    X_cpu = cupy.asnumpy(X_gpu)
    del X_gpu, X_sk

    def fit_sk_cpu(max_iter):
        return quiet_fit(SkGaussianMixture(k, tol=0.0, max_iter=max_iter, **init), X_cpu)

    sk_cpu, sk_cpu_model = per_iteration(fit_sk_cpu, args.sk_cpu_iters, 1)
    rows.append([f"scikit-learn CPU (NumPy, {os.cpu_count()} cores)", f"{sk_cpu:.3f}", f"{sk_cpu / ours:.2f}",
                 f"{sk_cpu_model.lower_bound_:.6f}"])
    _common.print_table(["", "s/iter", "ratio to daskgmm", "lower bound"], rows)


# --------------------------------------------------------------------------
# Part 2: strong scaling on CPU workers
# --------------------------------------------------------------------------


def part_scaling(args):
    import dask
    from distributed import wait

    from daskgmm import GaussianMixture, _engine

    n = args.scale_n // (10 if args.small else 1)
    d, k = 16, 16
    counts = [int(c) for c in args.workers.split(",")]
    print(f"\n== strong scaling: N={n:,} D={d} K={k} float64 full, {args.iters} iterations, "
          f"chunks of {args.scale_chunk_rows:,} rows")
    rows, base = [], None
    for p in counts:
        with dask.config.set(_engine.worker_environ_config()):  # recommended allocator settings
            cluster, client = _common.start_cluster(n_workers=p, threads_per_worker=1)
        try:
            _common.check_worker_blas(client)
            dX = synthetic(n, d, k, args.scale_chunk_rows, "float64").persist()
            wait(dX)
            init = inits(dX[:100_000].compute(), k, "float64")

            def fit(max_iter):
                return quiet_fit(GaussianMixture(k, tol=0.0, max_iter=max_iter, **init), dX)

            seconds, model = per_iteration(fit, args.iters, args.repeat)
        finally:
            client.close()
            cluster.close()
        base = base or seconds * p  # t1 (p = 1 first)
        rows.append([p, f"{seconds:.3f}", f"{base / seconds:.2f}", f"{base / (p * seconds):.0%}",
                     f"{model.lower_bound_:.8f}"])
        print(f"  {p} workers: {seconds:.3f} s/iter", flush=True)
    _common.print_table(["workers", "s/iter", "speed-up", "efficiency", "lower bound"], rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("gpu", "scaling", "all"), default="all")
    parser.add_argument("--small", action="store_true", help="N / 10")
    parser.add_argument("--iters", type=int, default=5, help="EM iterations timed (tol=0)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--gpu-n", type=int, default=10_000_000)
    parser.add_argument("--gpu-chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--gpu-threads", type=int, default=2, help="Dask threads feeding the GPU")
    parser.add_argument("--sk-array", choices=("cupy", "torch"), default="cupy")
    parser.add_argument("--cpu-stand-in", action="store_true", help="run the GPU part on NumPy chunks (plumbing check)")
    parser.add_argument("--sk-cpu-iters", type=int, default=2, help="iterations timed for scikit-learn on the CPU")
    parser.add_argument("--scale-n", type=int, default=20_000_000)
    parser.add_argument("--scale-chunk-rows", type=int, default=250_000)
    parser.add_argument("--workers", default="1,2,4,8,16", help="worker counts, comma separated, 1 first")
    args = parser.parse_args(argv)

    _common.print_header("daskgmm on GPU and scaled out")
    if args.part in ("gpu", "all"):
        part_gpu(args)
    if args.part in ("scaling", "all"):
        part_scaling(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
