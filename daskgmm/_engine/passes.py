"""One pass over the row chunks of the data: where the chunks are (persisted
or streamed, grouped by the worker holding them), the graph of a map over
chunks and a tree reduction, and the session the passes of one fit share.

A pass is one :func:`tree_reduce`: a map task per chunk (on a cluster, per
worker thread, over the chunks that worker holds) runs a chunk function
against a payload (carried inside the map tasks when small, else one graph
key, so it travels to each worker once per pass), a tree of merge tasks with
fan-in ``split_every`` combines the results, and the client merges the
tree's last level.  Only payload-sized objects leave the workers.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import time
import uuid

import numpy as np

import dask
import dask.array as da
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from .. import _blocks
from .runtime import current_client, fit_blas_limit, in_fit, one_blas_thread_per_task, should_persist, tune_workers

logger = logging.getLogger("daskgmm")

DEFAULT_SPLIT_EVERY = 8


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


class Box:
    """Holds a payload so Dask does not look inside it for keys."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def unbox(box):
    return box.value


def _apply_batch(
    chunk_fn, combine_fn, blocks, payload, offsets, side_names=None, side_values=None, join_chunks=False
):
    """One map task over several chunks held by the same worker, each given
    its chunks of the per-row side arrays (``side_names``, a :class:`Box` of
    names, and per name the list of chunks, ``side_values``) as keywords;
    with ``join_chunks``, small chunks joined first (:func:`_run_joined`)."""
    if isinstance(payload, Box):  # carried inside the task (pass_graph)
        payload = payload.value
    names, side_values = ((), ()) if side_names is None else (side_names.value, side_values)
    sides = [{name: values[b] for name, values in zip(names, side_values)} for b in range(len(blocks))]
    with quiet_float_errors():
        groups = _join_groups(blocks) if join_chunks else None
        if groups is not None and len(groups) < len(blocks):
            try:
                parts = [_run_joined(chunk_fn, blocks, payload, offsets, sides, group) for group in groups]
            except ValueError:
                # Errors name rows by their global index, which a block of
                # chunks from all over the data cannot give: chunk by chunk,
                # the same error names the right rows.
                parts = None
            if parts is not None:
                return parts[0] if len(parts) == 1 else combine_fn(parts)
        parts = [
            _run_chunk(chunk_fn, block, payload, offset, side) for block, offset, side in zip(blocks, offsets, sides)
        ]
        return parts[0] if len(parts) == 1 else combine_fn(parts)


# Chunks of one map task smaller than this are joined into blocks of up to
# this many bytes in the passes that allow it (``join_chunks``): a block
# function's call has a fixed cost besides its arithmetic (pivot,
# accumulators, per-slice set-up, the merge of its result), a large share of
# a chunk of 1,000 rows x 8 features, and negligible beside a block of a few
# MiB (figures: benchmarks/README.md, "joined chunks").
JOIN_BYTES = 4 * 2**20


def _nbytes(block):
    nbytes = getattr(block, "nbytes", None)
    return int(nbytes) if nbytes is not None else math.prod(block.shape) * 8


def _join_groups(blocks):
    """The chunks of a map task (indices into ``blocks``) in groups of at
    most :data:`JOIN_BYTES` in all, in order; a larger chunk alone."""
    groups, size = [], JOIN_BYTES + 1
    for b, block in enumerate(blocks):
        nbytes = _nbytes(block)
        if size + nbytes > JOIN_BYTES:
            groups.append([b])
            size = nbytes
        else:
            groups[-1].append(b)
            size += nbytes
    return groups


def _joined(arrays):
    if len(arrays) == 1:
        return arrays[0]
    return _blocks.get_namespace(arrays[0]).concat(arrays, axis=0)


def _run_joined(chunk_fn, blocks, payload, offsets, sides, group):
    """``chunk_fn`` on the chunks ``group`` of a map task joined into one
    block, their side arrays joined alike.  Its result is their results'
    merge, to rounding, for the chunk functions of the passes that allow it;
    the first chunk's offset stands for the block's (a message naming rows
    would be wrong: :func:`_apply_batch` then runs the chunks one by one)."""
    side = {name: _joined([sides[b][name] for b in group]) for name in sides[group[0]]}
    return _run_chunk(chunk_fn, _joined([blocks[b] for b in group]), payload, offsets[group[0]], side)


def _run_chunk(chunk_fn, block, payload, row_offset, side):
    """``chunk_fn`` on one chunk, given its chunks of the per-row side arrays
    (``side``: name -> chunk, e.g. ``sample_weight``) as keywords: chunk
    functions of passes without them need not take them."""
    return chunk_fn(block, payload, row_offset, **side)


def _side_arrays(weights, rows):
    """The per-row side arrays of a pass, name -> array: ``rows`` and the
    sample ``weights`` as ``sample_weight``."""
    side = {} if weights is None else {"sample_weight": weights}
    side.update({name: array for name, array in (rows or {}).items() if array is not None})
    return side


def quiet_float_errors():
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
    weights=None, rows=None, join_chunks=False,
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
        payload_arg = Box(payload)
    else:
        payload_arg = f"{name}-payload-{token}"
        layer[payload_arg] = (unbox, Box(payload))
    side = _side_arrays(weights, rows)
    side_names = Box(tuple(side)) if side else None
    keys = []
    for j, batch in enumerate(batches):
        key = (map_name, j)
        layer[key] = (
            _apply_batch, chunk_fn, combine_fn, [(X.name, i, 0) for i in batch], payload_arg,
            [offsets[i] for i in batch], side_names,
            [[(array.name, i) for i in batch] for array in side.values()] if side else None, join_chunks,
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
    graph = HighLevelGraph.from_collections(layer_name, layer, dependencies=[X, *side.values()])
    return [Delayed(key, graph, layer=layer_name) for key in keys]


def tree_reduce(
    X, chunk_fn, combine_fn, payload, *, split_every=DEFAULT_SPLIT_EVERY, name="daskgmm-pass", batches="auto",
    weights=None, rows=None, join_chunks=False,
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
    rows : dict, optional
        More per-row side arrays, name -> 1-D array chunked as ``weights``
        (None values left out): ``chunk_fn`` gets each chunk's part of every
        one as a keyword of that name (the partial labels of a fit:
        ``labels=``).
    join_chunks : bool
        Whether a map task over several chunks may join the small ones into
        one block (:data:`JOIN_BYTES`) before ``chunk_fn``: for chunk
        functions whose result on rows joined is the merge of their results
        on the parts (to rounding) and whose ``row_offset`` only serves
        their error messages.  A task whose joined block raises a
        ValueError runs its chunks one by one, so that the error names the
        right rows.  One map task per chunk (no batches, or
        :class:`InMemoryRows`) runs as without it.

    Returns
    -------
    The combined partial, computed (one graph submitted).
    """
    if isinstance(X, InMemoryRows):
        return _reduce_in_process(X, chunk_fn, combine_fn, payload, split_every, _side_arrays(weights, rows))
    client = _scheduling_client()
    session = _SESSION.get()
    if session is not None and session.client is not client:
        session = None
    if isinstance(batches, str):
        batches = _batches(X, client, session)
    delayeds = pass_graph(
        X, chunk_fn, combine_fn, payload, split_every=split_every, name=name, batches=batches, weights=weights,
        rows=rows, join_chunks=join_chunks,
    )
    if client is None:
        with one_blas_thread_per_task(client):
            parts = dask.compute(*delayeds, optimize_graph=False)
    else:
        parts = _compute_on(client, delayeds, session)
    return combine_fn(list(parts))


def _reduce_in_process(X, chunk_fn, combine_fn, payload, split_every, side):
    """:func:`tree_reduce` of :class:`InMemoryRows`: the map and the tree of
    :func:`pass_graph` (one map per chunk), run here; ``side``: the per-row
    side arrays, name -> NumPy array."""
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}.")
    with one_blas_thread_per_task(None), quiet_float_errors():
        parts = [
            _run_chunk(
                chunk_fn, block, payload, offset,
                {name: array[offset : offset + block.shape[0]] for name, array in side.items()},
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


@contextlib.contextmanager
def fit_session():
    """Context of one fit.

    * Its passes share a :class:`PassSession` when they run on a distributed
      client (None on the local schedulers); every result still held is
      released on exit.
    * This process's BLAS runs on one thread
      (:func:`daskgmm._engine.runtime.fit_blas_limit`).

    Nested sessions reuse the outer one."""
    if in_fit():
        yield _SESSION.get()
        return
    client = _scheduling_client()
    session = PassSession(client) if client is not None else None
    if client is not None:
        tune_workers(client)
    token = _SESSION.set(session)
    try:
        with fit_blas_limit():
            yield session
    finally:
        _SESSION.reset(token)
        if session is not None:
            session.close()


def fit_batches(X):
    """:func:`plan_batches` of ``X`` for the passes of the current fit: asked
    once per :func:`fit_session` (should chunks move meanwhile, the tasks
    still find them, at the cost of a transfer); None for
    :class:`InMemoryRows`."""
    return _batches(X, None, _SESSION.get())


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
