#!/usr/bin/env python
"""Fit a daskgmm.GaussianMixture on a SLURM or PBS cluster via dask-jobqueue.

The same command as ``python -m daskgmm.deploy`` (:func:`daskgmm.deploy.main`),
which an installed daskgmm runs without this checkout.

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

import sys

from daskgmm.deploy import DEFAULT_CONFIG, build_parser, cluster_overrides, load_data, main

__all__ = ["DEFAULT_CONFIG", "build_parser", "cluster_overrides", "load_data", "main"]

if __name__ == "__main__":
    sys.exit(main())
