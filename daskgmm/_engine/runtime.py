"""What the engine tunes in the processes it runs in: glibc's allocator on
the workers, one BLAS thread per task or per fit, and the memory the data may
take when persisted."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging

import dask

logger = logging.getLogger("daskgmm")

# Worker environment for the clusters daskgmm starts itself.  distributed
# spawns workers with MALLOC_TRIM_THRESHOLD_=64 KiB, which also fixes glibc's
# mmap threshold at 128 KiB: every multi-MiB temporary of a pass is then
# mmap'ed and page-faulted in afresh, slice after slice, which costs more
# than the chunk's arithmetic (figures: benchmarks/README.md, "allocator
# thresholds").  Serving blocks up to 32 MiB from the heap and trimming only
# beyond 64 MiB keeps them; large frees still return to the OS.  Every fit
# also sets them at run time on the workers it uses (:func:`tune_allocator`),
# so a cluster the user started is as fast.
WORKER_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": 64 * 2**20, "MALLOC_MMAP_THRESHOLD_": 32 * 2**20}


def worker_environ_config():
    """``dask.config.set`` mapping that gives worker processes spawned inside
    it :data:`WORKER_MALLOC_ENV`, so that the workers the command line starts
    have them from their first allocation.  Every fit also sets the same
    thresholds at run time on the workers it uses (:func:`tune_allocator`),
    which covers clusters started elsewhere."""
    return {f"distributed.nanny.pre-spawn-environ.{name}": value for name, value in WORKER_MALLOC_ENV.items()}


# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator():
    """Give this process the allocator thresholds of :data:`WORKER_MALLOC_ENV`
    at run time, with glibc's ``mallopt``.

    Run on every worker of the cluster a fit uses
    (:func:`daskgmm._engine.passes.fit_session`): a cluster the user started
    (``Client()``, ``LocalCluster()``, every dask-jobqueue worker) has
    distributed's MALLOC_TRIM_THRESHOLD_=64 KiB,
    which pins the mmap threshold at 128 KiB, and each multi-MiB temporary of
    a pass is then mmapped and page-faulted afresh, slowing every iteration
    (figures: benchmarks/README.md, "allocator thresholds").  The settings
    stay for the worker's lifetime: the heap keeps up to 64 MiB of freed
    memory per process; blocks over 32 MiB are still mmapped and returned at
    once.

    Returns
    -------
    bool
        True when both thresholds were set; False where the C library is not
        glibc (musl, macOS, Windows), which have no such thresholds: nothing
        is changed there.
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has it
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trim = int(WORKER_MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"])
    mmap = int(WORKER_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"])
    return mallopt(_M_TRIM_THRESHOLD, trim) == 1 and mallopt(_M_MMAP_THRESHOLD, mmap) == 1


def tune_workers(client):
    """:func:`tune_allocator` on every worker of ``client`` (one round trip
    per fit).  Workers that join during the fit keep their own settings
    until the next fit."""
    try:
        client.run(tune_allocator)
    except Exception as exc:  # noqa: BLE001 - an optimisation, never a failure
        logger.debug("could not tune the workers' allocator: %r", exc)


def current_client():
    """The active ``distributed.Client``, or None for the local schedulers."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


# What a worker process holds besides persisted data: the interpreter, the
# NumPy/SciPy/Dask imports and one pass's temporaries (figures:
# benchmarks/README.md, "worker baseline memory").  A fresh worker reports
# less (nothing imported yet), so this is a floor.
WORKER_BASELINE_BYTES = 256 * 2**20


def memory_budget(client):
    """Bytes the data may take when persisted without making workers spill.

    With a cluster: per worker, the memory below which Dask keeps data in RAM
    (``distributed.worker.memory.target``, 60% of ``memory_limit``) less what
    the process already uses (at least :data:`WORKER_BASELINE_BYTES`); summed
    over workers, times 0.8 for uneven placement of the chunks.  Without one
    (local schedulers): 60% of this machine's available memory.
    """
    if client is not None:
        info = client.scheduler_info(n_workers=-1) if _accepts_n_workers(client) else client.scheduler_info()
        workers = list(info.get("workers", {}).values())
        if workers and all(w.get("memory_limit") for w in workers):
            target = dask.config.get("distributed.worker.memory.target", 0.6) or 0.6
            free = [
                max(0.0, target * w["memory_limit"] - max(w.get("metrics", {}).get("memory", 0), WORKER_BASELINE_BYTES))
                for w in workers
            ]
            return 0.8 * sum(free)
    try:
        import psutil

        return 0.6 * psutil.virtual_memory().available
    except ImportError:  # pragma: no cover - psutil comes with distributed
        return float("inf")


def _accepts_n_workers(client):
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def should_persist(X, persist="auto"):
    """Whether :func:`daskgmm._engine.passes.place_data` persists ``X``:
    ``persist`` itself when a bool; for "auto", whether ``X.nbytes`` fits in
    :func:`memory_budget` of the current client (or of this machine).  Starts
    no computation."""
    if persist == "auto":
        return bool(X.nbytes <= memory_budget(current_client()))
    return bool(persist)


# True inside a fit (:func:`fit_blas_limit`: its BLAS limit is in force).
_IN_FIT = contextvars.ContextVar("daskgmm_in_fit", default=False)


def in_fit():
    """Whether this context is inside a fit (:func:`fit_blas_limit`)."""
    return _IN_FIT.get()


@contextlib.contextmanager
def fit_blas_limit():
    """This process's BLAS on one thread for a fit (:func:`_client_blas_limit`),
    the context marked as inside it."""
    in_fit = _IN_FIT.set(True)
    try:
        with _client_blas_limit():
            yield
    finally:
        _IN_FIT.reset(in_fit)


def _client_blas_limit():
    """One BLAS thread in this process for the duration of a fit.

    The client's own math (M-steps, Cholesky factors, k-means on the
    k-means|| candidates) is on K x D x D-sized arrays.  With OpenBLAS's
    default thread pool its idle threads spin for a while after each call,
    on the cores the workers of a local cluster compute on, and slow the
    first chunk of every pass (figures: benchmarks/README.md, "client BLAS
    threads").  On the local schedulers the chunk tasks run with one BLAS
    thread each anyway (:func:`one_blas_thread_per_task`)."""
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's view of the BLAS libraries this process has loaded,
    found once: a new ``threadpool_limits`` rescans every shared library the
    process has mapped, which once per pass would dominate a small fit."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread_per_task(client):
    """Without a distributed client, Dask's threads run the chunk tasks in
    this process: each task's BLAS must then use one thread, or threads x
    BLAS threads oversubscribe the cores, which slows a pass by an order of
    magnitude under load (figures: benchmarks/README.md, "BLAS threads per
    task").  Distributed workers already start with
    OMP/OPENBLAS/MKL_NUM_THREADS=1.  Inside a fit (:func:`fit_blas_limit`)
    the limit is already in force."""
    if client is not None or _IN_FIT.get():
        return contextlib.nullcontext()
    return _client_blas_limit()
