"""Per-row outputs as lazy Dask arrays with the row chunks of the data
(``score_samples``, ``predict``, ``predict_proba``), and the imputed rows the
initialisation of a fit with missing features runs on."""

from __future__ import annotations

import math
import uuid

import numpy as np

import dask.array as da
from dask.highlevelgraph import HighLevelGraph

from .. import _blocks, _blocks_missing
from .passes import Box, InMemoryRows, quiet_float_errors, row_offsets, unbox
from .runtime import one_blas_thread_per_task


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


def _log_resp_block(block, evaluation, skip_nonfinite, what, row_offset=0):
    """Per-row output ``what`` of one chunk; ``evaluation``: (family, model)."""
    family, model = evaluation
    with quiet_float_errors():
        log_norm, log_resp = family.chunk_log_resp(block, model, row_offset=row_offset, skip_nonfinite=skip_nonfinite)
    xp = _blocks.get_namespace(block)
    if what == "score_samples":
        return log_norm
    if what == "predict_proba":
        return xp.exp(log_resp)
    labels = xp.argmax(log_resp, axis=1)
    if family.leaves_rows_out(skip_nonfinite):
        labels = xp.where(xp.isnan(log_norm), xp.full_like(labels, -1), labels)
    return labels


def _log_resp_chunk(block, evaluation, skip_nonfinite, what, chunk_index):
    """:func:`_log_resp_block` on a row chunk whose global row offset is
    unknown (a Dask DataFrame's partition): a bad row is named by its chunk
    and its row in it."""
    try:
        return _log_resp_block(block, evaluation, skip_nonfinite, what, 0)
    except ValueError as error:
        raise ValueError(f"In row chunk {chunk_index} of X (its rows numbered from 0): {error}") from None


def map_rows(X, family, model, what, *, skip_nonfinite=False):
    """Per-row output of ``model`` over the chunks of ``X``: lazy (a Dask
    array) for a Dask ``X``, NumPy for :class:`InMemoryRows`.

    ``what`` is "score_samples" (n,), "predict" (n,) int labels or
    "predict_proba" (n, K) (K + 1 with a noise component), of each chunk by ``family.chunk_log_resp``
    (:mod:`daskgmm._families`); rows the family leaves out (those holding
    NaN or infinity with ``skip_nonfinite``) are NaN, label -1.  The family
    and the model travel as one graph key; each chunk's task knows its
    global row offset (for error messages), or, where the chunk sizes are
    unknown (a Dask DataFrame's partitions, kept unknown so that nothing is
    computed), its chunk index.  The output has the row chunks of ``X``.
    """
    if isinstance(X, InMemoryRows):
        with one_blas_thread_per_task(None):
            parts = [
                _log_resp_block(block, (family, model), skip_nonfinite, what, offset) for block, offset in X.blocks()
            ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    # A noise component is one more column of predict_proba (its last).
    k = np.asarray(model.means).shape[0] + (getattr(model, "noise_log_density", None) is not None)
    if what == "predict_proba":
        ndim, dtype, chunks = 2, X.dtype, (X.chunks[0], (k,))
    else:
        ndim, dtype, chunks = 1, (X.dtype if what == "score_samples" else np.int64), (X.chunks[0],)
    token = uuid.uuid4().hex[:12]
    name = f"daskgmm-{what.replace('_', '-')}-{token}"
    model_key = f"daskgmm-model-{token}"
    layer = {model_key: (unbox, Box((family, model)))}
    known = not any(math.isnan(size) for size in X.chunks[0])
    for i, offset in enumerate(row_offsets(X) if known else range(X.numblocks[0])):
        key = (name, i, 0) if ndim == 2 else (name, i)
        task = _log_resp_block if known else _log_resp_chunk
        layer[key] = (task, (X.name, i, 0), model_key, skip_nonfinite, what, offset)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[X])
    return da.Array(graph, name, chunks, meta=_meta(X, ndim, dtype))


def _meta(X, ndim, dtype):
    meta = getattr(X, "_meta", None)
    if meta is None or isinstance(meta, np.ndarray):
        return np.empty((0,) * ndim, dtype=dtype)
    xp = _blocks.get_namespace(meta)
    return xp.empty((0,) * ndim, dtype=dtype)
