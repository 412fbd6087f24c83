"""The distributed loop: the only module that knows about Dask.

One EM iteration is one :func:`tree_reduce` over the row chunks of a Dask
array: a map task per chunk (on a cluster, per worker thread, over the
chunks that worker holds) runs a block function from :mod:`daskgmm._blocks`
against the current parameters (carried inside the map tasks when small, else
one graph key, so they travel to each worker once per iteration), a tree of
merge tasks with fan-in ``split_every`` combines the results, and the client
merges the tree's last level.  Only parameter-sized objects leave the workers.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

import dask
import dask.array as da
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from . import _blocks, _blocks_missing
from ._covariance import (
    covariances_from_stats,
    make_model,
    precisions_cholesky_from_covariances,
)

logger = logging.getLogger("daskgmm")

DEFAULT_SPLIT_EVERY = 8

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

    Run on every worker of the cluster a fit uses (:func:`fit_session`): a
    cluster the user started (``Client()``, ``LocalCluster()``, every
    dask-jobqueue worker) has distributed's MALLOC_TRIM_THRESHOLD_=64 KiB,
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


def _tune_workers(client):
    """:func:`tune_allocator` on every worker of ``client`` (one round trip
    per fit).  Workers that join during the fit keep their own settings
    until the next fit."""
    try:
        client.run(tune_allocator)
    except Exception as exc:  # noqa: BLE001 - an optimisation, never a failure
        logger.debug("could not tune the workers' allocator: %r", exc)


# --------------------------------------------------------------------------
# Data placement
# --------------------------------------------------------------------------


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
    """Whether :func:`place_data` persists ``X``: ``persist`` itself when a
    bool; for "auto", whether ``X.nbytes`` fits in :func:`memory_budget` of
    the current client (or of this machine).  Starts no computation."""
    if persist == "auto":
        return bool(X.nbytes <= memory_budget(current_client()))
    return bool(persist)


def place_data(X, persist="auto", weights=None):
    """Persist ``X`` once in (distributed) memory, or leave it streamed; its
    sample ``weights`` (a Dask array chunked like its rows) go with it.

    Parameters
    ----------
    X : dask.array.Array
    persist : {"auto", True, False}
        "auto" persists when the data fits in :func:`memory_budget` (what the
        workers can hold without spilling); False streams every chunk from
        its source at every pass (out-of-core): each pass's graph then holds
        the chunks' source tasks (e.g. zarr reads), and a worker holds only
        the few chunks it is working on.

    weights : 1-D array or None
        Persisted together with ``X`` when it is a Dask array.

    Returns
    -------
    X : dask.array.Array
    weights : the weights, placed as ``X`` is
    persisted : bool
    """
    if isinstance(X, InMemoryRows):
        return X, weights, True
    if should_persist(X, persist):
        if isinstance(weights, da.Array):
            X, weights = dask.persist(X, weights)
        else:
            X = X.persist()
        client = current_client()
        if client is not None:
            # Wait until the chunks are in memory, so that every pass can
            # group them by the worker that holds them (plan_batches).
            from distributed import wait

            wait([X, weights] if isinstance(weights, da.Array) else X)
        return X, weights, True
    logger.info("streaming %d chunks (%.0f MiB) from their source at every pass", X.numblocks[0], X.nbytes / 2**20)
    return X, weights, False


def row_offsets(X):
    """Global index of the first row of each row chunk."""
    return [int(v) for v in np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]])]


class InMemoryRows:
    """Rows of an in-memory array split into the row chunks a Dask array of
    them would have, for fits whose passes run in this process.

    A pass over small data costs far more in graph building and scheduling
    than in arithmetic (figures: benchmarks/README.md, "in-process passes").
    The engine runs the same block functions on the same chunks and merges
    them in the same tree (:func:`tree_reduce`), so a fit gives the answers
    of the Dask path, to rounding, without a graph.

    Attributes mirror the parts of :class:`dask.array.Array` the engine
    reads: ``shape``, ``dtype``, ``nbytes``, ``chunks``, ``numblocks``.
    """

    def __init__(self, array, chunk_rows):
        n, d = array.shape
        chunk_rows = max(1, int(chunk_rows))
        sizes = [chunk_rows] * (n // chunk_rows) + ([n % chunk_rows] if n % chunk_rows else [])
        self.array = array
        self.shape = (n, d)
        self.ndim = 2
        self.dtype = array.dtype
        self.nbytes = array.nbytes
        self.chunks = (tuple(sizes), (d,))
        self.numblocks = (len(sizes), 1)

    def blocks(self):
        """(block, row_offset) of every chunk, as views."""
        for offset, size in zip(row_offsets(self), self.chunks[0]):
            yield self.array[offset : offset + size], offset

    def __repr__(self):
        return f"InMemoryRows(shape={self.shape}, dtype={self.dtype}, chunks={self.chunks[0][:3]}...)"


def _rows_of_block(block, local):
    xp = _blocks.get_namespace(block)
    return np.asarray(_blocks.to_numpy(xp.take(block, xp.asarray(local), axis=0)), dtype=np.float64)


def _concat_rows(parts):
    return np.concatenate(parts, axis=0)


def take_rows(X, indices):
    """Rows of ``X`` at global ``indices`` (any order, repeats allowed) as a
    float64 NumPy array, in one compute that reads only the chunks holding
    them (not a pass).  Each chunk is indexed by its own namespace's ``take``
    (Dask's fancy indexing would hand NumPy index arrays to, say, CuPy or
    ``array_api_strict`` chunks)."""
    indices = np.asarray(indices, dtype=np.int64)
    if isinstance(X, InMemoryRows):
        return np.asarray(_blocks.to_numpy(X.array[indices]), dtype=np.float64)
    unique, inverse = np.unique(indices, return_inverse=True)
    offsets = np.asarray(row_offsets(X))
    chunk_of = np.searchsorted(offsets, unique, side="right") - 1  # skips 0-row chunks
    name = f"daskgmm-take-rows-{uuid.uuid4().hex[:12]}"
    layer, keys = {}, []
    for j, chunk in enumerate(np.unique(chunk_of)):
        key = (name, j)
        layer[key] = (_rows_of_block, (X.name, int(chunk), 0), unique[chunk_of == chunk] - offsets[chunk])
        keys.append(key)
    layer[(name, "all")] = (_concat_rows, keys)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[X])
    (rows,) = dask.compute(Delayed((name, "all"), graph, layer=name))
    return rows[inverse.reshape(-1)]


# --------------------------------------------------------------------------
# One pass: a map over chunks and a tree reduction
# --------------------------------------------------------------------------


class _Box:
    """Holds a payload so Dask does not look inside it for keys."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _unbox(box):
    return box.value


def _apply_batch(chunk_fn, combine_fn, blocks, payload, offsets, weights=None):
    """One map task over several chunks held by the same worker (and their
    sample weights, given as ``sample_weight=``)."""
    if isinstance(payload, _Box):  # carried inside the task (pass_graph)
        payload = payload.value
    weights = weights if weights is not None else [None] * len(blocks)
    with _quiet_float_errors():
        parts = [_run_chunk(chunk_fn, block, payload, offset, w) for block, offset, w in zip(blocks, offsets, weights)]
        return parts[0] if len(parts) == 1 else combine_fn(parts)


def _run_chunk(chunk_fn, block, payload, row_offset, weights):
    """``chunk_fn`` on one chunk, given its sample ``weights`` (as
    ``sample_weight=``) when there are any: chunk functions of unweighted
    passes need not take them."""
    if weights is None:
        return chunk_fn(block, payload, row_offset)
    return chunk_fn(block, payload, row_offset, sample_weight=weights)


def _quiet_float_errors():
    """NumPy's floating-point warnings off in block math: a NaN/inf row or an
    overflow is always caught by the finiteness checks of the sums and
    per-row results (and reported as a ValueError naming the row); the
    warning before it would only be noise, or an error under
    ``-W error::RuntimeWarning``."""
    return np.errstate(invalid="ignore", over="ignore", divide="ignore")


def plan_batches(X, client=None):
    """Group the row chunks of a persisted ``X`` by the worker holding them.

    One map task per chunk costs the distributed scheduler a fixed overhead,
    which dominates a pass over many small chunks.  A map task may instead
    process several chunks *that live on the same worker* (so no data moves)
    and merge them locally.  Each worker gets one task per thread (more only
    to keep at most 32 chunks per task): every extra task is one more message
    and one more partial result to move (figures: benchmarks/README.md, "map
    tasks per worker").

    Returns
    -------
    list of lists of chunk indices, or None (one task per chunk): without a
    distributed client, or while some chunk is not in any worker's memory
    (streamed data).
    """
    client = client if client is not None else current_client()
    if client is None or X.numblocks[0] < 2:
        return None
    keys = [(X.name, i, 0) for i in range(X.numblocks[0])]
    try:
        who_has = client.who_has(X)  # {} unless X is persisted on the cluster
    except Exception:  # noqa: BLE001 - a plan is an optimisation, never a failure
        return None
    by_worker = {}
    for i, key in enumerate(keys):
        holders = who_has.get(key) or who_has.get(str(key))
        if not holders:
            return None
        by_worker.setdefault(sorted(holders)[0], []).append(i)
    nthreads = client.nthreads()
    batches = []
    for worker, chunks in sorted(by_worker.items()):
        threads = nthreads.get(worker, 1)
        n_batches = min(len(chunks), max(threads, math.ceil(len(chunks) / 32)))
        for part in np.array_split(np.asarray(chunks), n_batches):
            batches.append([int(i) for i in part])
    return sorted(batches)


# Total bytes of payload copies that may ride inside the map tasks
# themselves; beyond it the payload becomes one graph key fetched by each
# worker.  Inside the tasks it saves a worker-to-worker fetch on the
# critical path of every pass (figures: benchmarks/README.md, "payload in
# the tasks"); with a per-worker plan it still reaches each worker's threads
# once.
PAYLOAD_EMBED_BYTES = 4 * 2**20


def _embeds_payload(payload, n_map_tasks):
    from dask.sizeof import sizeof

    return n_map_tasks * sizeof(payload) <= PAYLOAD_EMBED_BYTES


def pass_graph(
    X, chunk_fn, combine_fn, payload, *, split_every=DEFAULT_SPLIT_EVERY, name="daskgmm-pass", batches=None,
    weights=None,
):
    """The graph of one pass (see :func:`tree_reduce`): a list of Delayed,
    the partial results the client combines last.

    Their layer holds exactly :func:`count_tasks` tasks: the payload key
    (unless the payload rides inside the map tasks), one map task per chunk
    (or per batch of chunks, see :func:`plan_batches`) and the inner levels
    of the reduction tree, which stop once at most ``split_every`` partials
    are left: the root of the tree is the client's own ``combine_fn`` call,
    so no task (and no extra transfer) sits between the workers and it.
    """
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}.")
    if X.numblocks[1] != 1:
        raise ValueError("X must have a single chunk along columns.")
    token = uuid.uuid4().hex[:12]
    map_name = f"{name}-map-{token}"
    offsets = row_offsets(X)
    if batches is None:
        batches = [[i] for i in range(X.numblocks[0])]
    layer = {}
    if _embeds_payload(payload, len(batches)):
        payload_arg = _Box(payload)
    else:
        payload_arg = f"{name}-payload-{token}"
        layer[payload_arg] = (_unbox, _Box(payload))
    keys = []
    for j, batch in enumerate(batches):
        key = (map_name, j)
        layer[key] = (
            _apply_batch, chunk_fn, combine_fn, [(X.name, i, 0) for i in batch], payload_arg,
            [offsets[i] for i in batch], None if weights is None else [(weights.name, i) for i in batch],
        )
        keys.append(key)
    level = 0
    while len(keys) > split_every:
        level += 1
        red_name = f"{name}-reduce{level}-{token}"
        new_keys = []
        for j in range(0, len(keys), split_every):
            key = (red_name, j // split_every)
            layer[key] = (combine_fn, list(keys[j : j + split_every]))
            new_keys.append(key)
        keys = new_keys
    layer_name = f"{name}-{token}"
    graph = HighLevelGraph.from_collections(layer_name, layer, dependencies=[X] + ([weights] if weights is not None else []))
    return [Delayed(key, graph, layer=layer_name) for key in keys]


def tree_reduce(
    X, chunk_fn, combine_fn, payload, *, split_every=DEFAULT_SPLIT_EVERY, name="daskgmm-pass", batches="auto",
    weights=None,
):
    """Map ``chunk_fn`` over the row chunks of ``X`` and tree-reduce the results.

    Parameters
    ----------
    X : dask.array.Array
        2-D, a single chunk along columns.
    chunk_fn : callable ``(block, payload, row_offset) -> partial``
    combine_fn : callable ``(list_of_partials) -> partial``
        Must be associative; called with at most ``split_every`` items, by
        the tasks of the tree and, for its root, on the client.
    payload : object
        Broadcast to the chunk tasks once per pass: inside the map tasks when
        small (:data:`PAYLOAD_EMBED_BYTES`), else through one graph key.
    split_every : int
        Fan-in of the reduction tree (>= 2).
    batches : "auto", None or list of lists of chunk indices
        "auto": :func:`plan_batches` (chunks grouped per holding worker on a
        distributed cluster; asked once per :func:`fit_session`); None: one
        map task per chunk.
    weights : 1-D array, optional
        Sample weights, chunked like the rows of ``X`` (a Dask array; NumPy
        for :class:`InMemoryRows`): ``chunk_fn`` then gets each chunk's
        weights as ``sample_weight=``.

    Returns
    -------
    The combined partial, computed (one graph submitted).
    """
    if isinstance(X, InMemoryRows):
        return _reduce_in_process(X, chunk_fn, combine_fn, payload, split_every, weights)
    client = _scheduling_client()
    session = _SESSION.get()
    if session is not None and session.client is not client:
        session = None
    if isinstance(batches, str):
        batches = _batches(X, client, session)
    delayeds = pass_graph(
        X, chunk_fn, combine_fn, payload, split_every=split_every, name=name, batches=batches, weights=weights
    )
    if client is None:
        with _one_blas_thread_per_task(client):
            parts = dask.compute(*delayeds, optimize_graph=False)
    else:
        parts = _compute_on(client, delayeds, session)
    return combine_fn(list(parts))


def _reduce_in_process(X, chunk_fn, combine_fn, payload, split_every, weights=None):
    """:func:`tree_reduce` of :class:`InMemoryRows`: the map and the tree of
    :func:`pass_graph` (one map per chunk), run here."""
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}.")
    with _one_blas_thread_per_task(None), _quiet_float_errors():
        parts = [
            _run_chunk(
                chunk_fn, block, payload, offset, None if weights is None else weights[offset : offset + block.shape[0]]
            )
            for block, offset in X.blocks()
        ]
        while len(parts) > split_every:
            parts = [combine_fn(parts[j : j + split_every]) for j in range(0, len(parts), split_every)]
    return combine_fn(parts)


def _batches(X, client, session):
    """:func:`plan_batches` of ``X``, asked once per ``session`` (when not None)."""
    if isinstance(X, InMemoryRows):
        return None
    return session.batches(X) if session is not None else plan_batches(X, client)


def _scheduling_client():
    """The distributed client that computes a pass: the current one, unless
    Dask's default scheduler is set to something else (say ``scheduler=
    "sync"`` for debugging, with a client open)."""
    client = current_client()
    if client is None:
        return None
    from dask.base import get_scheduler

    return client if getattr(get_scheduler(), "__self__", None) is client else None


def _compute_on(client, delayeds, session):
    """Submit a pass's graph to ``client`` and gather its partial results;
    within a :func:`fit_session` they are held by the session (see
    :class:`PassSession`), else released at once (as ``dask.compute`` does)."""
    tic = time.perf_counter()
    # The graph as it is: client.compute would optimise and convert the
    # Delayed collections again at every pass, client time each pass waits
    # on (figures: benchmarks/README.md, "pass overhead").
    futures = client.get(delayeds[0].__dask_graph__(), [d.key for d in delayeds], sync=False)
    if session is not None:
        session.submitted()
    try:
        parts = client.gather(futures)
    except BaseException:
        _release(futures)
        raise
    if session is not None:
        session.hold(futures, parts, time.perf_counter() - tic)
    else:
        _release(futures)
    return parts


def _release(futures):
    for future in futures:
        with contextlib.suppress(Exception):  # a closing client: nothing left to release
            future.release()


class PassSession:
    """What the passes of one fit share on a distributed cluster.

    * The placement of the chunks (:func:`plan_batches`), asked once per
      data set rather than at every pass (two scheduler round trips).
    * The timing of the messages that release each pass's partial results.
      distributed's client sends the scheduler its messages in batches, one
      batch per interval, and the scheduler batches those to each worker in
      the same way.  Released right after the gather (as ``dask.compute``
      does), the results of pass i cost a message that holds back the graph
      of pass i + 1 by up to one such interval, a large share of a short
      pass (figures: benchmarks/README.md, "release timing").  So the
      results are kept until the next pass has been submitted, then released
      :data:`RELEASE_DELAY` seconds later, while its tasks run: after a pass
      of at least :data:`SLOW_PASS` seconds, and otherwise once
      :data:`MAX_HELD_PASSES` passes or :data:`MAX_HELD_BYTES` of results are
      held (short passes would otherwise wait on the release of their
      predecessor).  Were a worker lost, the scheduler would recompute the
      held results it had: at most one long pass or a few short ones.
    """

    RELEASE_DELAY = 0.005
    SLOW_PASS = 0.1
    MAX_HELD_PASSES = 8
    MAX_HELD_BYTES = 64 * 2**20

    def __init__(self, client):
        self.client = client
        self._plans = {}
        self._held = []  # (futures, nbytes, seconds) per pass
        self.releases = 0  # batches of passes released (for tests)

    def batches(self, X):
        if X.name not in self._plans:
            self._plans[X.name] = plan_batches(X, self.client)
        return self._plans[X.name]

    def submitted(self):
        """Called right after a pass's graph was submitted."""
        if not self._held:
            return
        _, _, seconds = self._held[-1]
        if (
            seconds >= self.SLOW_PASS
            or len(self._held) >= self.MAX_HELD_PASSES
            or sum(nbytes for _, nbytes, _ in self._held) >= self.MAX_HELD_BYTES
        ):
            futures = [future for held in self._held for future in held[0]]
            self._held = []
            self.releases += 1
            try:
                self.client.loop.call_later(self.RELEASE_DELAY, _release, futures)
            except Exception:  # noqa: BLE001 - no loop to schedule on: release now
                _release(futures)

    def hold(self, futures, parts, seconds):
        from dask.sizeof import sizeof

        self._held.append((futures, sum(sizeof(part) for part in parts), seconds))

    def close(self):
        held, self._held = self._held, []
        _release([future for futures, _, _ in held for future in futures])


_SESSION = contextvars.ContextVar("daskgmm_pass_session", default=None)
# True inside a fit_session (its BLAS limit is in force).
_IN_FIT = contextvars.ContextVar("daskgmm_in_fit", default=False)


@contextlib.contextmanager
def fit_session():
    """Context of one fit.

    * Its passes share a :class:`PassSession` when they run on a distributed
      client (None on the local schedulers); every result still held is
      released on exit.
    * This process's BLAS runs on one thread (:func:`_client_blas_limit`).

    Nested sessions reuse the outer one."""
    if _IN_FIT.get():
        yield _SESSION.get()
        return
    client = _scheduling_client()
    session = PassSession(client) if client is not None else None
    if client is not None:
        _tune_workers(client)
    token = _SESSION.set(session)
    in_fit = _IN_FIT.set(True)
    try:
        with _client_blas_limit():
            yield session
    finally:
        _IN_FIT.reset(in_fit)
        _SESSION.reset(token)
        if session is not None:
            session.close()


def _client_blas_limit():
    """One BLAS thread in this process for the duration of a fit.

    The client's own math (M-steps, Cholesky factors, k-means on the
    k-means|| candidates) is on K x D x D-sized arrays.  With OpenBLAS's
    default thread pool its idle threads spin for a while after each call,
    on the cores the workers of a local cluster compute on, and slow the
    first chunk of every pass (figures: benchmarks/README.md, "client BLAS
    threads").  On the local schedulers the chunk tasks run with one BLAS
    thread each anyway (:func:`_one_blas_thread_per_task`)."""
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's view of the BLAS libraries this process has loaded,
    found once: a new ``threadpool_limits`` rescans every shared library the
    process has mapped, which once per pass would dominate a small fit."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread_per_task(client):
    """Without a distributed client, Dask's threads run the chunk tasks in
    this process: each task's BLAS must then use one thread, or threads x
    BLAS threads oversubscribe the cores, which slows a pass by an order of
    magnitude under load (figures: benchmarks/README.md, "BLAS threads per
    task").  Distributed workers already start with
    OMP/OPENBLAS/MKL_NUM_THREADS=1.  Inside a :func:`fit_session` the limit
    is already in force."""
    if client is not None or _IN_FIT.get():
        return contextlib.nullcontext()
    return _client_blas_limit()


def count_tasks(X, split_every=DEFAULT_SPLIT_EVERY, batches=None, payload=None):
    """Tasks in one pass's graph (:func:`pass_graph`) for this ``payload``:
    the payload key unless it rides in the map tasks, one task per map task
    and the inner levels of the reduction tree (the client merges the last
    ``split_every`` or fewer partials)."""
    n = X.numblocks[0] if batches is None else len(batches)
    tasks = n + (0 if _embeds_payload(payload, n) else 1)
    while n > split_every:
        n = math.ceil(n / split_every)
        tasks += n
    return tasks


# --------------------------------------------------------------------------
# Missing features (missing="marginalize")
# --------------------------------------------------------------------------


def _missing_chunk(block, payload, row_offset, sample_weight=None):
    return _blocks_missing.missing_summary(_blocks.to_numpy(block), row_offset, sample_weight)


def missing_pass(X, *, split_every=DEFAULT_SPLIT_EVERY, weights=None):
    """One pass counting the missing (NaN) entries of ``X``, the incomplete
    rows and the rows with every feature missing, and the (weighted) mean of
    each feature's observed values (:func:`_blocks_missing.missing_summary`,
    whose error names a row holding infinity)."""
    return tree_reduce(
        X, _missing_chunk, _blocks_missing.merge_summaries, None, split_every=split_every, name="daskgmm-missing",
        weights=weights,
    )


def imputed_rows(X, fill, weights=None):
    """What the initialisation of a fit with missing features runs on: ``X``
    with its NaN entries replaced by ``fill`` (D,), and row weights that are
    0 for a row with every feature missing (times ``weights``).  Lazy for
    Dask input (recomputed from ``X`` at each pass), copies for
    :class:`InMemoryRows`."""
    fill = np.asarray(fill)
    if isinstance(X, InMemoryRows):
        init_weights = _blocks_missing.observed_rows_weight(X.array, weights)
        return InMemoryRows(_blocks_missing.impute(X.array, fill), max(X.chunks[0])), init_weights
    filled = X.map_blocks(_blocks_missing.impute, fill, dtype=X.dtype)
    init_weights = X.map_blocks(_blocks_missing.observed_rows_weight, drop_axis=1, dtype=X.dtype)
    if weights is not None:
        init_weights = init_weights * weights
    return filled, init_weights


# --------------------------------------------------------------------------
# EM
# --------------------------------------------------------------------------


@dataclass
class Run:
    """State of one EM run (a restart, or one candidate model)."""

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    lower_bound: float = -np.inf
    n_iter: int = 0
    converged: bool = False
    history: list = field(default_factory=list)
    tag: object = None
    # One dict per iteration: iteration, lower_bound, change, seconds, n_chunks
    # (the estimator's ``history_``; saved in checkpoints).
    records: list = field(default_factory=list)
    # Rows the last E-step used (fewer than the data's with skip_nonfinite).
    n_samples: float | None = None
    # Family-specific parameters besides the Gaussian ones (the variational
    # posterior of daskgmm._families.BayesianFamily), name -> array.
    posterior: dict = field(default_factory=dict)
    # (weights, means, covariances) of the maximum-likelihood M-step of the
    # last statistics the family's M-step took, whatever the family: the
    # data's mean and variance follow from them (checkpoints compare them
    # with the data's).
    moments: tuple | None = None
    # The merged statistics of the pass whose M-step gave the parameters
    # (:func:`run_em` keeps them, checkpoints save them): a stepwise stream
    # of ``partial_fit`` continuing the fit starts from them.
    statistics: _blocks.Stats | None = None

    @property
    def n_components(self):
        return self.means.shape[0]

    def model(self):
        return make_model(self.weights, self.means, self.precisions_cholesky, self.covariance_type)


# Widest stack of models evaluated together, in components x features: past
# it, the row slices of :func:`_blocks.block_statistics` get too short.
MAX_STACK_WIDTH = 1 << 13


def stack_plan(models):
    """How to evaluate ``models`` on a block: a list of ``(indices, model,
    groups)``.  Models of one covariance type (but 'tied') are stacked
    (:func:`_blocks.stack_models`) so that they share the pivot-centred
    block, the matrix products and the per-slice work; ``groups`` is None for
    a model evaluated alone."""
    plan = []
    by_kind = {}
    for i, model in enumerate(models):
        by_kind.setdefault(model.covariance_type, []).append(i)
    for kind, indices in by_kind.items():
        if kind == "tied":
            plan.extend(([i], models[i], None) for i in indices)
            continue
        batch, width = [], 0
        for i in indices + [None]:
            size = None if i is None else models[i].means.shape[0] * models[i].means.shape[1]
            if batch and (i is None or width + size > MAX_STACK_WIDTH):
                if len(batch) == 1:
                    plan.append((batch, models[batch[0]], None))
                else:
                    plan.append((batch, *_blocks.stack_models([models[j] for j in batch])))
                batch, width = [], 0
            if i is not None:
                batch.append(i)
                width += size
    return plan


def _em_chunk(block, payload, row_offset, sample_weight=None):
    evaluations, skip_nonfinite, marginalize = payload
    if marginalize:
        return [
            _blocks_missing.marginal_block_statistics(
                block, model, row_offset=row_offset, groups=groups, sample_weight=sample_weight
            )
            for model, groups in evaluations
        ]
    return [
        _blocks.block_statistics(
            block, model, row_offset=row_offset, skip_nonfinite=skip_nonfinite, groups=groups,
            sample_weight=sample_weight,
        )
        for model, groups in evaluations
    ]


def merge_stat_columns(partials):
    """Combine function of passes whose chunk tasks return one Stats per run:
    merges the i-th Stats of every partial."""
    return [_blocks.merge_many(column) for column in zip(*partials)]


def em_pass(
    X, runs, *, skip_nonfinite=False, split_every=DEFAULT_SPLIT_EVERY, batches="auto", models=None, weights=None,
    marginalize=False,
):
    """Merged statistics of every run in ``runs`` from one pass over ``X``
    (weighted by ``weights``, chunked like the rows of ``X``, when given).
    With ``marginalize``, NaN entries are missing features, marginalised
    (:mod:`daskgmm._blocks_missing`).

    One task per chunk (or per batch of chunks, see :func:`plan_batches`)
    evaluates all the runs, stacked by covariance type (:func:`stack_plan`).
    ``models`` are the E-step parameters of the runs (default: their
    maximum-likelihood :meth:`Run.model`)."""
    plan = stack_plan(models if models is not None else [run.model() for run in runs])
    evaluations = tuple((model, groups) for _, model, groups in plan)
    stats = tree_reduce(
        X, _em_chunk, merge_stat_columns, (evaluations, skip_nonfinite, marginalize), split_every=split_every,
        name="daskgmm-em",
        batches=batches, weights=weights,
    )
    out = [None] * len(runs)
    for (indices, _, groups), merged in zip(plan, stats):
        merged = stats_to_numpy(merged)
        parts = [merged] if groups is None else _blocks.split_statistics(merged, groups)
        for i, part in zip(indices, parts):
            out[i] = part
    return out


def _score_chunk(block, payload, row_offset, sample_weight=None):
    models, marginalize = payload
    xp = _blocks.get_namespace(block)
    out = []
    for model in models:
        if marginalize:  # rows with every feature missing count for nothing
            log_norm, _ = _blocks_missing.marginal_log_resp(block, model, row_offset=row_offset)
            log_norm = xp.where(xp.isnan(log_norm), xp.zeros_like(log_norm), log_norm)
        else:
            log_norm, _ = _blocks.estimate_log_resp(block, model)
        total = xp.sum(log_norm if sample_weight is None else _blocks.weighted_values(xp, log_norm, sample_weight))
        _blocks.check_finite(xp, total, block, row_offset)
        out.append(float(total))
    return np.array(out, dtype=np.float64)


def _score_combine(partials):
    return np.sum(partials, axis=0)


def score_pass(X, models, *, split_every=DEFAULT_SPLIT_EVERY, weights=None, marginalize=False):
    """Total log-likelihood ``sum_i w_i log p(x_i)`` (``w_i = 1`` without
    ``weights``) of every model in ``models`` (client-side
    :class:`_blocks.Model`), all from one pass over ``X``.

    Returns
    -------
    (len(models),) float64 array
    """
    return tree_reduce(
        X, _score_chunk, _score_combine, (tuple(models), marginalize), split_every=split_every, name="daskgmm-score",
        weights=weights,
    )


def stats_to_numpy(stats):
    """The same Stats with every array copied to NumPy (from any namespace)."""
    return _blocks.Stats(stats.covariance_type, *(np.asarray(_blocks.to_numpy(v)) for v in stats[1:]))


def m_step(run, stats, reg_covar):
    """Closed-form M-step: new parameters of ``run`` from merged stats (and
    ``run.moments``, which they are)."""
    weights, means, covariances = covariances_from_stats(stats, reg_covar)
    run.moments = (weights, means, covariances)
    run.weights, run.means, run.covariances = weights, means, covariances
    run.precisions_cholesky = precisions_cholesky_from_covariances(covariances, run.covariance_type)


def run_em(
    X,
    runs,
    *,
    tol,
    max_iter,
    reg_covar,
    split_every=DEFAULT_SPLIT_EVERY,
    skip_nonfinite=False,
    callbacks=(),
    start_iter=0,
    family=None,
    weights=None,
    weight_scale=1.0,
    marginalize=False,
):
    """Iterate EM on every run in ``runs`` until each converges or ``max_iter``.

    All still-running runs share each pass over the data: one task per chunk
    evaluates every one of them.  A run drops out when it converges.
    ``family`` (default: maximum likelihood, :data:`daskgmm._families.GAUSSIAN`)
    gives each run's E-step parameters, its M-step and its lower bound.
    ``weights`` are the sample weights divided by ``weight_scale`` (a power
    of two): ``run.n_samples`` is the real total weight.

    Each callback is called after every pass as ``callback(info)`` with a
    dict: ``iteration``, ``runs`` (the list), ``active`` (indices evaluated),
    ``seconds``, ``n_chunks``.

    Returns
    -------
    runs : the same list, updated in place; each run's ``statistics`` are
        the merged statistics of its last pass (its parameters' M-step).
    n_passes : number of passes made.
    """
    if family is None:
        from ._families import GAUSSIAN as family
    n_passes = 0
    # Where the chunks live is asked once per fit, not once per pass (a
    # scheduler round trip); should chunks move meanwhile, the tasks still
    # find them, at the cost of a transfer.
    batches = _batches(X, None, _SESSION.get())
    for iteration in range(start_iter + 1, max_iter + 1):
        active = [i for i, run in enumerate(runs) if not run.converged]
        if not active:
            break
        tic = time.perf_counter()
        models = [family.model(runs[i]) for i in active]
        stats = em_pass(
            X, [runs[i] for i in active], skip_nonfinite=skip_nonfinite, split_every=split_every, batches=batches,
            models=models, weights=weights, marginalize=marginalize,
        )
        n_passes += 1
        for i, st, model in zip(active, stats, models):
            run = runs[i]
            n_samples = float(st.n_samples)
            if n_samples == 0:
                raise ValueError("No finite samples left to fit.")
            run.n_samples = n_samples * weight_scale
            previous = run.lower_bound
            run.lower_bound = family.step(run, st, reg_covar, model)
            run.statistics = st if weight_scale == 1.0 else real_statistics(st, weight_scale)
            run.n_iter = iteration
            change = run.lower_bound - previous
            run.history.append(run.lower_bound)
            if abs(change) < tol:
                run.converged = True
        seconds = time.perf_counter() - tic
        for i in active:
            run = runs[i]
            change = run.history[-1] - run.history[-2] if len(run.history) > 1 else float("inf")
            run.records.append(
                {
                    "iteration": iteration,
                    "lower_bound": run.lower_bound,
                    "change": change,
                    "seconds": seconds,
                    "n_chunks": X.numblocks[0],
                }
            )
            logger.debug(
                "iteration %d run %d: lower bound %.10g, change %.3g (%.3fs)",
                iteration, i, run.lower_bound, change, seconds,
            )
        info = {
            "iteration": iteration,
            "runs": runs,
            "active": active,
            "seconds": seconds,
            "n_chunks": X.numblocks[0],
        }
        for callback in callbacks:
            callback(info)
    return runs, n_passes


# --------------------------------------------------------------------------
# Online EM (``partial_fit``): statistics carried from batch to batch
# --------------------------------------------------------------------------


ONLINE_MODES = ("stepwise", "exact")


@dataclass
class OnlineState:
    """What ``partial_fit`` carries between batches besides the parameters.

    ``statistics`` is, in ``'stepwise'`` mode, the running per-sample
    statistics ``s_t`` (``n_samples`` = 1) and, in ``'exact'`` mode, the
    merged statistics of the batches of the current pass (None before the
    first batch of a pass).  ``n_batch_iter`` counts the batches that
    updated the running statistics; ``n_samples_seen`` the total weight of
    every batch seen (and of the fit a stepwise stream continues).
    ``batch_offset`` is the number of batches the data of that fit count
    as (0 for a stream that began with ``partial_fit``): the step size of
    batch ``n_batch_iter`` is that of batch ``n_batch_iter + batch_offset``.
    ``weight_scale`` is the power of two the sample weights of an exact
    pass's statistics are divided by (that of its first batch; see
    ``mixture._check_sample_weight``), so that their sums stay of order 1
    whatever the scale of the weights; the stepwise running statistics are
    per sample and need none.
    """

    mode: str
    statistics: _blocks.Stats | None = None
    n_batch_iter: int = 0
    n_samples_seen: float = 0.0
    # Chunks of the batches of the current pass (exact mode), for its record.
    n_chunks: int = 0
    batch_offset: int = 0
    weight_scale: float = 1.0


def stream_after_fit(fit_statistics, batch_weight):
    """The stepwise state a stream continuing a fit starts from.

    ``fit_statistics`` are the merged statistics of the fit's last pass
    (:attr:`Run.statistics`, the M-step of which gave the parameters),
    ``batch_weight`` the total weight of the stream's first batch (> 0).
    The running statistics are the fit's per sample, ``n_samples_seen`` its
    total weight, and the fit counts as ``max(1, round(fit_weight /
    batch_weight))`` earlier batches of this batch's size: the first batch
    gets the step size that follows (a small one after a large fit),
    instead of replacing the fit's statistics with its own.
    """
    fit_weight = float(fit_statistics.n_samples)
    return OnlineState(
        "stepwise",
        statistics=scale_statistics(fit_statistics, 1.0 / fit_weight),
        n_samples_seen=fit_weight,
        batch_offset=max(1, int(round(fit_weight / batch_weight))),
    )


def no_effective_weight_error(skip_nonfinite=False):
    """The ValueError for rows that leave nothing to fit: no sample with a
    positive weight and an observed feature (a fully masked scene, a batch
    whose weights are all on empty rows).  Their statistics count zero
    samples, and every M-step or per-sample average would divide by it."""
    left_out = (
        "a NaN or infinite feature (such samples are left out)" if skip_nonfinite
        else "every feature missing (NaN)"
    )
    return ValueError(
        f"X has no sample with a positive weight and an observed feature: every sample has a weight of 0 or "
        f"{left_out}, so there is nothing to fit. Check the mask or the weights of this data."
    )


def step_size(n_batch_iter, decay, offset):
    """``gamma_t = (t + t0) ** -alpha``, the weight of batch ``t`` (1, 2, ...)
    in the running statistics (the first batch's is 1, whatever this says:
    there is nothing before it to keep)."""
    return 1.0 if n_batch_iter <= 1 else float((n_batch_iter + offset) ** -decay)


def scale_statistics(stats, factor):
    """``stats`` of rows whose weights are all multiplied by ``factor``:
    counts, log-likelihood and scatter scale, the means do not.  Exact (one
    multiplication per number), so a convex combination of two statistics
    is :func:`_blocks.merge_statistics` of the two, scaled."""
    return _blocks.Stats(
        stats.covariance_type,
        stats.n_samples * factor,
        stats.log_likelihood * factor,
        stats.nk * factor,
        stats.means,
        stats.scatter * factor,
    )


def real_statistics(stats, weight_scale):
    """``stats`` of weights divided by ``weight_scale`` (a power of two), in
    the real weights' units, as a stream continuing the fit counts them; None
    where those are not representable in the statistics' dtype (a total
    weight that overflows, or underflows below the normal numbers): the
    stream then starts from its first batch, as after a fit without them."""
    with np.errstate(over="ignore", under="ignore"):
        real = scale_statistics(stats, weight_scale)
    fields = (real.n_samples, real.log_likelihood, real.nk, real.means, real.scatter)
    tiny = np.finfo(np.asarray(real.means).dtype).tiny
    if not (all(np.all(np.isfinite(value)) for value in fields) and float(real.n_samples) >= tiny):
        return None
    return real


def stepwise_statistics(running, batch, gamma):
    """Stepwise EM's update ``s_t = (1 - gamma) s_{t-1} + gamma S_b / n_b``
    (Cappé & Moulines 2009; Liang & Klein 2009) of the running per-sample
    statistics ``running`` (None before the first batch) by the merged
    statistics ``batch`` of one batch, in the centred form: the two are
    scaled and merged, so no raw moments are ever subtracted."""
    if not float(batch.n_samples) > 0:
        raise no_effective_weight_error()
    per_sample = scale_statistics(batch, 1.0 / float(batch.n_samples))
    if running is None or gamma >= 1.0:
        return per_sample
    return _blocks.merge_statistics(scale_statistics(running, 1.0 - gamma), scale_statistics(per_sample, gamma))


# --------------------------------------------------------------------------
# Lazy per-row outputs
# --------------------------------------------------------------------------


def _log_resp_block(block, model, skip_nonfinite, what, row_offset=0, marginalize=False):
    with _quiet_float_errors():
        if marginalize:
            log_norm, log_resp = _blocks_missing.marginal_log_resp(block, model, row_offset=row_offset)
        else:
            log_norm, log_resp = _blocks.estimate_log_resp(block, model, skip_nonfinite=skip_nonfinite)
    xp = _blocks.get_namespace(block)
    if marginalize:  # rows with every feature missing: NaN, label -1
        skip_nonfinite = True
    elif not skip_nonfinite:
        _check_rows_finite(xp, block, log_norm, row_offset)
    if what == "score_samples":
        return log_norm
    if what == "predict_proba":
        return xp.exp(log_resp)
    labels = xp.argmax(log_resp, axis=1)
    if skip_nonfinite:
        labels = xp.where(xp.isnan(log_norm), xp.full_like(labels, -1), labels)
    return labels


def _log_resp_chunk(block, model, skip_nonfinite, what, chunk_index, marginalize=False):
    """:func:`_log_resp_block` on a row chunk whose global row offset is
    unknown (a Dask DataFrame's partition): a bad row is named by its chunk
    and its row in it."""
    try:
        return _log_resp_block(block, model, skip_nonfinite, what, 0, marginalize)
    except ValueError as error:
        raise ValueError(f"In row chunk {chunk_index} of X (its rows numbered from 0): {error}") from None


def _check_rows_finite(xp, block, log_norm, row_offset):
    """A row holding NaN or infinity raises a ValueError naming it (global
    index): it would otherwise make the block's pivot, and so every answer
    of the block, NaN.  The rows are looked at only when some per-row result
    is not finite, so a clean block costs one check of (n,) values.  Finite
    rows too far out for the dtype keep their -inf (documented)."""
    if not bool(xp.all(xp.isfinite(log_norm))) and not bool(xp.all(_blocks._finite_rows(xp, block))):
        _blocks._raise_nonfinite(xp, block, row_offset)


def map_rows(X, model, what, *, skip_nonfinite=False, marginalize=False):
    """Per-row output of ``model`` over the chunks of ``X``: lazy (a Dask
    array) for a Dask ``X``, NumPy for :class:`InMemoryRows`.

    ``what`` is "score_samples" (n,), "predict" (n,) int labels or
    "predict_proba" (n, K).  The model travels as one graph key; each chunk's
    task knows its global row offset (for error messages), or, where the
    chunk sizes are unknown (a Dask DataFrame's partitions, kept unknown so
    that nothing is computed), its chunk index.  The output has the row
    chunks of ``X``.
    """
    if isinstance(X, InMemoryRows):
        with _one_blas_thread_per_task(None):
            parts = [
                _log_resp_block(block, model, skip_nonfinite, what, offset, marginalize) for block, offset in X.blocks()
            ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    k = np.asarray(model.means).shape[0]
    if what == "predict_proba":
        ndim, dtype, chunks = 2, X.dtype, (X.chunks[0], (k,))
    else:
        ndim, dtype, chunks = 1, (X.dtype if what == "score_samples" else np.int64), (X.chunks[0],)
    token = uuid.uuid4().hex[:12]
    name = f"daskgmm-{what.replace('_', '-')}-{token}"
    model_key = f"daskgmm-model-{token}"
    layer = {model_key: (_unbox, _Box(model))}
    known = not any(math.isnan(size) for size in X.chunks[0])
    for i, offset in enumerate(row_offsets(X) if known else range(X.numblocks[0])):
        key = (name, i, 0) if ndim == 2 else (name, i)
        task = _log_resp_block if known else _log_resp_chunk
        layer[key] = (task, (X.name, i, 0), model_key, skip_nonfinite, what, offset, marginalize)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[X])
    return da.Array(graph, name, chunks, meta=_meta(X, ndim, dtype))


def _meta(X, ndim, dtype):
    meta = getattr(X, "_meta", None)
    if meta is None or isinstance(meta, np.ndarray):
        return np.empty((0,) * ndim, dtype=dtype)
    xp = _blocks.get_namespace(meta)
    return xp.empty((0,) * ndim, dtype=dtype)
