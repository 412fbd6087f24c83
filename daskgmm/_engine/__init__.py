"""The distributed loop: the only package that knows about Dask.

One EM iteration is one pass over the row chunks of a Dask array: a map task
per chunk (on a cluster, per worker thread, over the chunks that worker
holds) runs its family's chunk function (:mod:`daskgmm._families`, on the
block math of :mod:`daskgmm._blocks`) against the current parameters, a tree
of merge tasks combines the results, and the client merges the tree's last
level.  Only parameter-sized objects leave the workers.

* :mod:`.inputs`: arrays, DataFrames, DataArrays and sample weights as the
  passes read them, and the reductions over lazy per-row outputs;
* :mod:`.runtime`: the allocator and BLAS settings of the processes a fit
  runs in, the memory the data may take;
* :mod:`.passes`: data placement, the graph of one pass and its tree
  reduction, the session the passes of one fit share;
* :mod:`.em`: the passes of a fit and the EM loop (:func:`run_em`);
* :mod:`.online`: what ``partial_fit`` carries from batch to batch;
* :mod:`.rows`: lazy per-row outputs.

The names below are those the rest of daskgmm, its tests and benchmarks use.
"""

from . import em, inputs, online, passes, rows, runtime
from .em import em_pass, missing_pass, run_em, score_pass
from .inputs import (
    as_dask_array,
    check_sample_weight,
    computed,
    is_dask_array,
    is_lazy,
    subsample,
    weight_total,
    weighted_mean,
)
from .online import ONLINE_MODES, OnlineState, step_size, stream_after_fit
from .passes import (
    DEFAULT_SPLIT_EVERY,
    PAYLOAD_EMBED_BYTES,
    InMemoryRows,
    PassSession,
    count_tasks,
    fit_session,
    pass_graph,
    place_data,
    plan_batches,
    take_rows,
    tree_reduce,
)
from .rows import imputed_rows, map_rows
from .runtime import (
    WORKER_MALLOC_ENV,
    current_client,
    memory_budget,
    should_persist,
    tune_allocator,
    worker_environ_config,
)

__all__ = [
    "DEFAULT_SPLIT_EVERY", "InMemoryRows", "ONLINE_MODES", "OnlineState", "PAYLOAD_EMBED_BYTES", "PassSession",
    "WORKER_MALLOC_ENV", "as_dask_array", "check_sample_weight", "computed", "count_tasks", "current_client", "em",
    "em_pass", "fit_session", "imputed_rows", "inputs", "is_dask_array", "is_lazy", "map_rows", "memory_budget",
    "missing_pass", "online", "pass_graph", "passes", "place_data", "plan_batches", "rows", "run_em", "runtime",
    "score_pass", "should_persist", "step_size", "stream_after_fit", "subsample", "take_rows", "tree_reduce",
    "tune_allocator", "weight_total", "weighted_mean", "worker_environ_config",
]
