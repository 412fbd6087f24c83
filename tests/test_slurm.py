"""daskgmm on a real SLURM: dask-jobqueue submits ``sbatch`` jobs to a one-node
SLURM on this machine, started by ``deploy/slurm/setup_local_slurm.sh``.

The fits run on workers inside SLURM jobs and must equal the same fits on a
LocalCluster to 1e-10; closing the cluster must cancel the jobs. Job ids and
the time from ``sbatch`` to connected workers are printed to the terminal
(visible in CI's log) and recorded as test properties.

Where the setup script cannot run (not Linux, not root, a real SLURM's
slurm.conf) the tests are skipped with the script's reason. Outside CI a
machine without ``sbatch`` is skipped too (the script would apt-get install
Slurm); under ``CI=true`` the script always runs, and its failure is an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from daskgmm import deploy

from .conftest import make_blobs, mmapped_by_a_4mib_buffer

dask_jobqueue = pytest.importorskip("dask_jobqueue")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "deploy" / "slurm" / "setup_local_slurm.sh"
CONFIG = REPO / "deploy" / "jobqueue.yaml"
SCRIPT = REPO / "deploy" / "run_jobqueue_fit.py"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# deploy/jobqueue.yaml sized down to one job on the local node (2 CPUs):
# the same overrides deploy/README.md gives for the local SLURM.
LOCAL_SLURM = {
    "queue": "debug",
    "cores": 2,
    "processes": 2,
    "memory": "4GiB",
    "walltime": "00:10:00",
}
LOCAL_SLURM_FLAGS = [
    "--queue", "debug", "--cores", "2", "--processes", "2",
    "--memory", "4GiB", "--walltime", "00:10:00",
]
SCHEDULER = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
CANNOT_RUN = 3  # the setup script's exit status for "cannot run here"


def _report(capsys, line):
    """Write one line to the real terminal, whatever pytest's capture mode."""
    with capsys.disabled():
        print(f"\n[slurm] {line}", flush=True)


@pytest.fixture(scope="module")
def local_slurm():
    """A running one-node SLURM; returns the setup script's output."""
    if not sys.platform.startswith("linux"):
        pytest.skip(f"the local SLURM needs Linux, not {sys.platform}")
    if os.geteuid() != 0:
        pytest.skip(f"the local SLURM needs root ({SETUP.relative_to(REPO)} starts "
                    "munged, slurmctld and slurmd); run the tests as root")
    if not IN_CI and shutil.which("sbatch") is None:
        pytest.skip(f"Slurm is not installed; run `bash {SETUP.relative_to(REPO)}` "
                    "as root (apt-get installs it) or set CI=true")
    res = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True,
                         timeout=600, stdin=subprocess.DEVNULL)
    output = (res.stdout + res.stderr).strip()
    if res.returncode == CANNOT_RUN and not IN_CI:
        pytest.skip(output.splitlines()[-1])
    if res.returncode != 0:
        pytest.fail(f"{SETUP.name} failed (exit {res.returncode}):\n{output}", pytrace=False)
    return output


def squeue_ids():
    """Ids of this machine's SLURM jobs that are pending, running or completing."""
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True,
                         text=True, check=True).stdout
    return sorted(out.split())


def diagnose(log_dir):
    """What the queue and the job logs say, for a failure message."""
    queue = subprocess.run(["squeue", "-l"], capture_output=True, text=True).stdout
    nodes = subprocess.run(["sinfo", "-N", "-l"], capture_output=True, text=True).stdout
    logs = "".join(f"--- {p.name}\n{p.read_text()[-2000:]}\n"
                   for p in sorted(Path(log_dir).glob("*")))
    return f"no workers from SLURM within 120 s\n{queue}\n{nodes}\n{logs}"


def wait_until_gone(job_ids, timeout=60):
    """Wait until none of `job_ids` is in squeue; return the ones left."""
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(set(job_ids) & set(squeue_ids()))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_blobs(n=20_000, d=4, k=3, seed=3)
    return X


def fit(X, client):
    """The same fit on whichever cluster `client` is connected to."""
    import dask.array as da
    from distributed import get_task_stream

    import daskgmm

    model = daskgmm.GaussianMixture(
        n_components=3, covariance_type="full", tol=0.0, max_iter=10, random_state=0)
    # tol=0: exactly max_iter iterations, never "converged".
    with get_task_stream(client) as stream, pytest.warns(ConvergenceWarning):
        model.fit(da.from_array(X, chunks=(2_500, -1)))
    return model, {task["worker"] for task in stream.data}


@pytest.fixture(scope="module")
def local_model(data):
    """The reference: the same fit on a LocalCluster with two processes."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        model, _ = fit(data, client)
    return model


def test_slurm_cluster_fit_equals_local(local_slurm, data, local_model, tmp_path,
                                        capsys, record_property):
    from distributed import Client

    before = set(squeue_ids())
    cluster = deploy.make_cluster(
        "slurm", CONFIG, **LOCAL_SLURM, python=sys.executable,
        log_directory=str(tmp_path / "logs"), scheduler_options=SCHEDULER)
    job_ids = []
    try:
        assert "#SBATCH -p debug\n" in cluster.job_script()
        t0 = time.perf_counter()
        cluster.scale(jobs=1)
        with Client(cluster) as client:
            try:
                client.wait_for_workers(LOCAL_SLURM["processes"], timeout=120)
            except TimeoutError:
                pytest.fail(diagnose(tmp_path / "logs"), pytrace=False)
            up_s = time.perf_counter() - t0
            job_ids = sorted(job.job_id for job in cluster.workers.values())
            # Every worker runs inside one of our sbatch jobs.
            env_ids = client.run(lambda: os.environ.get("SLURM_JOB_ID"))
            assert len(job_ids) == 1 and set(env_ids.values()) == set(job_ids)
            assert set(job_ids) <= set(squeue_ids()) - before

            # dask-jobqueue's workers start with distributed's allocator
            # settings; the fit sets daskgmm's at run time (glibc only).
            trim_env = set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values())
            t1 = time.perf_counter()
            model, task_workers = fit(data, client)
            fit_s = time.perf_counter() - t1
            assert task_workers and task_workers <= set(env_ids)
            tuned = not any(client.run(mmapped_by_a_4mib_buffer).values())
    finally:
        cluster.close()
    left = wait_until_gone(job_ids)

    diffs = {
        attr: float(np.max(np.abs(np.asarray(getattr(model, attr))
                                  - np.asarray(getattr(local_model, attr)))))
        for attr in ("weights_", "means_", "covariances_", "lower_bound_")
    }
    record_property("slurm_job_ids", " ".join(job_ids))
    record_property("slurm_workers_up_s", round(up_s, 2))
    record_property("slurm_fit_s", round(fit_s, 2))
    record_property("max_abs_diff_vs_local", diffs)
    _report(capsys, local_slurm.splitlines()[-1])
    _report(capsys, f"SLURMCluster: sbatch job(s) {' '.join(job_ids)} on partition debug, "
                    f"{len(env_ids)} workers up {up_s:.1f} s after scale(jobs=1); "
                    f"fit {fit_s:.1f} s ({model.n_iter_} iterations); max |SLURM - LocalCluster| "
                    + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
                    + f"; jobs left in squeue after close: {left or 'none'}; workers' "
                    f"MALLOC_TRIM_THRESHOLD_={sorted(map(str, trim_env))}, allocator tuned by the fit: {tuned}")
    assert tuned, "the fit did not set the allocator thresholds on the sbatch workers"

    assert model.n_iter_ == local_model.n_iter_ == 10
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(model, attr), getattr(local_model, attr),
                                   rtol=1e-10, atol=0, err_msg=attr)
    np.testing.assert_allclose(model.lower_bound_, local_model.lower_bound_,
                               rtol=1e-10, atol=0)
    assert not left, f"jobs {left} still in squeue after cluster.close()"


def test_run_jobqueue_fit_script_on_slurm(local_slurm, data, local_model, tmp_path,
                                          capsys, record_property):
    """deploy/run_jobqueue_fit.py --system slurm, as a user would run it."""
    import daskgmm

    np.save(tmp_path / "X.npy", data)
    out = tmp_path / "gmm.npz"
    before = set(squeue_ids())
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--system", "slurm", "--config", str(CONFIG),
         *LOCAL_SLURM_FLAGS, "--jobs", "1", "--wait-timeout", "120",
         "--scheduler-host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
         "--data", str(tmp_path / "X.npy"), "--chunk-rows", "2500",
         "-k", "3", "--max-iter", "10", "--tol", "0", "--random-state", "0",
         "--out", str(out)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        stdin=subprocess.DEVNULL)
    run_s = time.perf_counter() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"saved model to {out}" in res.stdout

    # The jobs it submitted are cancelled when it exits. With log-directory
    # null their output files (slurm-<id>.out) are in the submit directory.
    printed = [line for line in res.stdout.splitlines() if "batch job id(s):" in line]
    assert len(printed) == 1, res.stdout
    job_ids = sorted(printed[0].rsplit(":", 1)[1].split())
    assert len(job_ids) == 1
    assert sorted(p.name[len("slurm-"):-len(".out")]
                  for p in tmp_path.glob("slurm-*.out")) == job_ids
    left = wait_until_gone(set(job_ids) | (set(squeue_ids()) - before))
    record_property("slurm_job_ids", " ".join(job_ids))
    record_property("script_s", round(run_s, 2))
    _report(capsys, f"run_jobqueue_fit.py --system slurm: sbatch job(s) {' '.join(job_ids)}, "
                    f"{run_s:.1f} s in all; jobs left in squeue after exit: {left or 'none'}")
    assert not left, f"jobs {left} still in squeue after the script exited"

    model = daskgmm.load(out)
    np.testing.assert_allclose(model.means_, local_model.means_, rtol=1e-10, atol=0)
    np.testing.assert_allclose(model.covariances_, local_model.covariances_,
                               rtol=1e-10, atol=0)
