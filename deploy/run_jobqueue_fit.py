#!/usr/bin/env python
"""Fit a daskgmm.GaussianMixture on a SLURM or PBS cluster via dask-jobqueue.

Run this on a login (or otherwise long-lived) node that can submit jobs: it
starts a dask scheduler in this process, submits ``--jobs`` batch jobs that
each run dask workers (sized by ``--config``), loads the data lazily, fits,
and prints a summary (and saves the model with ``--out``). The jobs are
cancelled when the script exits.

Examples
--------
Show the batch script a worker job would run, submitting nothing::

    python deploy/run_jobqueue_fit.py --system slurm --dry-run

Fit 8 components on a (n_samples, n_features) .npy file with 4 jobs::

    python deploy/run_jobqueue_fit.py --system slurm --jobs 4 \\
        --data /scratch/me/X.npy --n-components 8 --out gmm.npz

The data file must be on a file system the compute nodes can read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().with_name("jobqueue.yaml")


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser.

    Returns
    -------
    argparse.ArgumentParser
        Parser for this script's options.
    """
    p = argparse.ArgumentParser(
        description=(
            "Start a dask-jobqueue cluster (SLURM or PBS) from a YAML config, "
            "fit daskgmm.GaussianMixture on a .npy or zarr array, and print "
            "or save the result."
        ),
        epilog=(
            "Example: %(prog)s --system slurm --jobs 4 --data X.npy "
            "--n-components 8 --out gmm.npz   |   "
            "%(prog)s --system pbs --dry-run"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("cluster")
    g.add_argument(
        "--system", choices=["slurm", "pbs"], default="slurm",
        help="job-queue system (section of the config file to use)",
    )
    g.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG,
        help="dask-jobqueue YAML file with jobqueue.slurm / jobqueue.pbs sections",
    )
    g.add_argument(
        "--jobs", type=int, default=2,
        help="number of batch jobs to run (each runs 'processes' workers)",
    )
    g.add_argument(
        "--adapt", action="store_true",
        help="keep --jobs jobs running with cluster.adapt, replacing workers "
        "that retire at their --lifetime (for fits longer than the walltime)",
    )
    g.add_argument("--queue", help="override the queue / partition")
    g.add_argument("--account", help="override the account to charge")
    g.add_argument("--walltime", help="override the job walltime, e.g. 02:00:00")
    g.add_argument("--cores", type=int, help="override the cores per job")
    g.add_argument("--memory", help="override the memory per job, e.g. 64GiB")
    g.add_argument("--processes", type=int, help="override the worker processes per job")
    g.add_argument(
        "--scheduler-host",
        help="address the scheduler listens on (must be reachable from the "
        "compute nodes); default: from the config's interface/scheduler-options",
    )
    g.add_argument(
        "--dashboard-address",
        help="scheduler dashboard address, e.g. :8787 (needs bokeh)",
    )
    g.add_argument(
        "--wait-timeout", type=float, default=3600.0,
        help="seconds to wait for the first worker to start (queue wait)",
    )
    g.add_argument(
        "--dry-run", action="store_true",
        help="print the generated job script and exit without submitting jobs",
    )

    d = p.add_argument_group("data")
    d.add_argument(
        "--data", type=Path,
        help="2-D array of shape (n_samples, n_features): a .npy file or a "
        "zarr store (required unless --dry-run)",
    )
    d.add_argument(
        "--zarr-component", default=None,
        help="array inside the zarr store (for groups)",
    )
    d.add_argument(
        "--chunk-rows", type=int, default=100_000,
        help="samples per dask chunk",
    )

    m = p.add_argument_group("model")
    m.add_argument("--n-components", "-k", type=int, default=1, help="number of mixture components K")
    m.add_argument(
        "--covariance-type", choices=["full", "tied", "diag", "spherical"],
        default="full", help="covariance parametrisation",
    )
    m.add_argument("--max-iter", type=int, default=100, help="maximum EM iterations")
    m.add_argument("--tol", type=float, default=1e-3, help="convergence threshold on the lower bound")
    m.add_argument("--random-state", type=int, default=None, help="seed for the initialisation")
    m.add_argument("--out", type=Path, help="save the fitted model here (model.save, .npz format)")
    m.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p


def cluster_overrides(args: argparse.Namespace) -> dict:
    """Collect the cluster keyword overrides given on the command line.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    dict
        Keyword arguments for :func:`daskgmm.deploy.make_cluster`.
    """
    overrides = {
        key: getattr(args, key)
        for key in ("queue", "account", "walltime", "cores", "memory", "processes")
        if getattr(args, key) is not None
    }
    scheduler_options = {}
    if args.scheduler_host is not None:
        scheduler_options["host"] = args.scheduler_host
    if args.dashboard_address is not None:
        scheduler_options["dashboard_address"] = args.dashboard_address
    if scheduler_options:
        overrides["scheduler_options"] = scheduler_options
    return overrides


def _read_npy_rows(path: str, start: int, stop: int):
    import numpy as np

    return np.asarray(np.load(path, mmap_mode="r")[start:stop])


def load_data(path: Path, chunk_rows: int, zarr_component: str | None = None):
    """Open a 2-D ``.npy`` file or zarr array as a lazy dask array.

    ``.npy`` blocks are read by the workers themselves (memory-mapped), so
    only file names travel through the scheduler; the file must be on a
    shared file system.

    Parameters
    ----------
    path : pathlib.Path
        ``.npy`` file, or zarr store (any other path).
    chunk_rows : int
        Number of samples per chunk; features are kept in one chunk.
    zarr_component : str, optional
        Path of the array inside a zarr group.

    Returns
    -------
    dask.array.Array
        Array of shape ``(n_samples, n_features)``.
    """
    import dask
    import dask.array as da
    import numpy as np

    if path.suffix == ".npy":
        header = np.load(path, mmap_mode="r")
        shape, dtype = header.shape, header.dtype
        del header
        if len(shape) != 2:
            raise SystemExit(f"{path}: expected a 2-D array, got shape {shape}")
        read = dask.delayed(_read_npy_rows, pure=True)
        blocks = [
            da.from_delayed(
                read(str(path), start, min(start + chunk_rows, shape[0])),
                shape=(min(start + chunk_rows, shape[0]) - start, shape[1]),
                dtype=dtype,
            )
            for start in range(0, shape[0], chunk_rows)
        ]
        return da.concatenate(blocks, axis=0)
    X = da.from_zarr(str(path), component=zarr_component)
    if X.ndim != 2:
        raise SystemExit(f"{path}: expected a 2-D array, got shape {X.shape}")
    return X.rechunk((chunk_rows, -1))


def main(argv: list[str] | None = None) -> int:
    """Run the script.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dry_run and args.data is None:
        parser.error("--data is required unless --dry-run is given")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if not args.dry_run and args.out is not None and args.out.exists() and not args.overwrite:
        # Fail before submitting any job rather than after the fit.
        parser.error(f"--out {args.out} already exists; pass --overwrite to replace it")

    from daskgmm.deploy import make_cluster

    try:
        cluster = make_cluster(args.system, args.config, **cluster_overrides(args))
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    with cluster:
        if args.dry_run:
            print(cluster.job_script())
            return 0

        from distributed import Client

        import daskgmm

        X = load_data(args.data, args.chunk_rows, args.zarr_component)
        if args.adapt:
            cluster.adapt(minimum_jobs=args.jobs, maximum_jobs=args.jobs)
        else:
            cluster.scale(jobs=args.jobs)
        with Client(cluster) as client:
            print(f"dashboard: {client.dashboard_link}", flush=True)
            print(f"waiting for workers ({args.jobs} job(s) submitted) ...", flush=True)
            t_submit = time.perf_counter()
            client.wait_for_workers(1, timeout=args.wait_timeout)
            job_ids = [
                str(job.job_id) for job in list(cluster.workers.values())
                if getattr(job, "job_id", None) is not None
            ]
            print(
                f"first worker up after {time.perf_counter() - t_submit:.1f} s; "
                f"batch job id(s): {' '.join(job_ids) or 'none'}",
                flush=True,
            )
            t0 = time.perf_counter()
            model = daskgmm.GaussianMixture(
                n_components=args.n_components,
                covariance_type=args.covariance_type,
                max_iter=args.max_iter,
                tol=args.tol,
                random_state=args.random_state,
            )
            model.fit(X)
            elapsed = time.perf_counter() - t0

        print(f"fitted {args.n_components} components on {X.shape} in {elapsed:.1f} s")
        for attr in ("converged_", "n_iter_", "lower_bound_", "weights_", "means_"):
            if hasattr(model, attr):
                print(f"{attr} = {getattr(model, attr)}")
        if args.out is not None:
            model.save(args.out, overwrite=args.overwrite)
            print(f"saved model to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
