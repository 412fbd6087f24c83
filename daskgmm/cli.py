"""The ``daskgmm`` command line: ``fit``, ``predict``, ``info`` and ``demo``.

Examples
--------
Fit 4 components on a NumPy file, on a LocalCluster of 2 workers::

    daskgmm fit X.npy --n-components 4 --workers 2

Draw the fitted components over (a sample of) the data and the lower bound per
iteration (matplotlib: ``pip install "daskgmm[plot]"``)::

    daskgmm fit X.npy --n-components 4 --plot fit.png

Fit a (time, y, x, band) cube from a zarr store; samples with a missing band
(NaN) are skipped and get label -1::

    daskgmm fit cube.zarr --variable reflectance --feature-dim band --n-components 5
    daskgmm predict cube.daskgmm.npz cube.zarr --out labels.zarr

Weight the samples: a .npy of one weight per row for plain input, or a
variable of the store (over some of the sample dimensions, e.g. a (y, x)
weight map, broadcast over the others) for labelled input::

    daskgmm fit X.npy --n-components 4 --sample-weight w.npy
    daskgmm fit cube.zarr --variable reflectance --feature-dim band -k 5 --sample-weight pixel_weight

Show a saved model, or run the built-in demonstration::

    daskgmm info cube.daskgmm.npz
    daskgmm demo --plot demo.png

Errors are reported as one line on stderr (``daskgmm: error: ...``) with exit
status 1 (2 for a bad command line).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import re
import signal
import stat
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from ._monitor import Monitor

PROG = "daskgmm"
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


class NpyFile:
    """A ``.npy`` file as a lazy array-like for :func:`dask.array.from_array`.

    It pickles as its path, so each task memory-maps its own rows instead of
    the data travelling through the task graph.
    """

    def __init__(self, path):
        from .io import check_regular_file

        self.path = os.fspath(path)
        check_regular_file(self.path, "a .npy file")
        array = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, index):
        return np.asarray(np.load(self.path, mmap_mode="r")[index])

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype.str}

    def __setstate__(self, state):
        self.path = state["path"]
        self.shape = tuple(state["shape"])
        self.dtype = np.dtype(state["dtype"])
        self.ndim = len(self.shape)


def input_format(path):
    """'npy', 'zarr' or 'netcdf' from the path's suffix (or a zarr folder's content)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix == ".zarr" or (path.is_dir() and any((path / marker).exists() for marker in ZARR_MARKERS)):
        return "zarr"
    if suffix in NETCDF_SUFFIXES:
        return "netcdf"
    raise ValueError(
        f"cannot tell the format of {path}: use a .npy file, a zarr store (.zarr) or a netCDF file "
        f"({', '.join(NETCDF_SUFFIXES)})."
    )


class Input:
    """What a command reads: a plain 2-D array or labelled data.

    Attributes
    ----------
    X : dask.array.Array or None
        Plain input, (n_samples, n_features).
    data : xarray.DataArray or xarray.Dataset or None
        Labelled input, used with ``feature_dim``, ``sample_dims``, ``variables``.
    """

    def __init__(self, path, fmt, X=None, data=None, feature_dim=None, sample_dims=None, variables=None, dataset=None):
        self.path, self.format, self.X, self.data = os.fspath(path), fmt, X, data
        self.feature_dim, self.sample_dims, self.variables = feature_dim, sample_dims, variables
        self.dataset = dataset  # the whole opened store (labelled input), for --sample-weight

    def sample_weight(self, spec):
        """What ``--sample-weight SPEC`` names, ready for the fit, and its
        description for the saved model's metadata.

        Plain input: SPEC is a ``.npy`` file of one weight per row, read
        lazily in the rows' chunks.  Labelled input: SPEC is a variable of
        the store, over (some of) the sample dimensions; it is aligned and
        broadcast by :func:`daskgmm.xarray.fit`.
        """
        if spec is None:
            return None, None
        if self.labelled:
            ds = self.dataset
            if ds is None or spec not in ds.data_vars:
                names = _describe_variables(ds) if ds is not None else "none"
                raise ValueError(
                    f"--sample-weight {spec}: for labelled input it names a variable of {self.path}; "
                    f"its variables are {names}."
                )
            weight = ds[spec]
            record = {"variable": spec, "dims": [str(d) for d in weight.dims]}
            # A Dataset of features is given the name, so that the weights
            # can be no feature; a single variable is given the weights.
            return (spec if self.data is ds else weight), record
        import dask.array as da

        if Path(spec).suffix.lower() != ".npy":
            raise ValueError(f"--sample-weight {spec}: for plain input it is a .npy file of one weight per row.")
        if not os.path.exists(spec):
            raise FileNotFoundError(f"no such file or directory: {spec}")
        weights = NpyFile(spec)
        n = self.X.shape[0]
        if weights.shape != (n,):
            raise ValueError(
                f"--sample-weight {spec} holds an array of shape {weights.shape}; expected ({n},): "
                f"one weight per row of {self.path}."
            )
        name = f"npy-{Path(spec).name}-{os.stat(spec).st_mtime_ns}"
        return da.from_array(weights, chunks=(self.X.chunks[0],), asarray=True, name=name), {"source": spec, "format": "npy"}

    @property
    def labelled(self):
        return self.data is not None

    def layout(self):
        """JSON description recorded in a saved model (``input``)."""
        if not self.labelled:
            return {"source": self.path, "format": self.format, "labelled": False}
        from .xarray import as_feature_array

        array, feature_dim = as_feature_array(self.data, self.feature_dim, self.variables)
        features = array[feature_dim].values.tolist() if feature_dim in array.coords else None
        return {
            "source": self.path,
            "format": self.format,
            "labelled": True,
            "variables": self.variables,
            "feature_dim": str(feature_dim),
            "sample_dims": None if self.sample_dims is None else [str(d) for d in self.sample_dims],
            "features": None if features is None else [str(f) for f in features],
        }


def _split_names(values):
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``; None stays None."""
    if not values:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return names or None


def _describe_variables(ds):
    return ", ".join(f"{name}({', '.join(map(str, ds[name].dims))})" for name in ds.data_vars) or "none"


def _choose_labelled(ds, path, variables, feature_dim, sample_dims):
    """A DataArray (one variable holding ``feature_dim``) or the Dataset
    (variables as features) from an opened Dataset."""
    if variables:
        missing = [name for name in variables if name not in ds.data_vars]
        if missing:
            raise ValueError(f"{path} has no variable {', '.join(missing)}; its variables are {_describe_variables(ds)}.")
    if variables and len(variables) == 1 and feature_dim is not None and feature_dim in ds[variables[0]].dims:
        return Input(path, None, data=ds[variables[0]], feature_dim=feature_dim, sample_dims=sample_dims, dataset=ds)
    if variables:
        return Input(
            path, None, data=ds, feature_dim=feature_dim, sample_dims=sample_dims, variables=variables, dataset=ds
        )
    if feature_dim is not None:
        holders = [name for name in ds.data_vars if feature_dim in ds[name].dims]
        if len(holders) == 1:
            return Input(path, None, data=ds[holders[0]], feature_dim=feature_dim, sample_dims=sample_dims, dataset=ds)
        if len(holders) > 1:
            raise ValueError(
                f"several variables of {path} have a dimension {feature_dim!r} ({', '.join(holders)}): "
                "choose one with --variable."
            )
        raise ValueError(
            f"no variable of {path} has a dimension {feature_dim!r}; its variables are {_describe_variables(ds)}. "
            "Name the dimension holding the features with --feature-dim, or use variables as features "
            "with --variable A,B,..."
        )
    raise ValueError(
        f"{path} holds labelled data: name the dimension holding the features with --feature-dim "
        f"(and the variable with --variable), or use variables as features with --variable A,B,...; "
        f"its variables are {_describe_variables(ds)}."
    )


def open_input(path, *, variables=None, feature_dim=None, sample_dims=None):
    """Open ``path`` lazily, with the storage's own chunks.

    ``.npy`` files are memory-mapped into a Dask array of row chunks; zarr
    stores open with :func:`xarray.open_zarr` (or :func:`dask.array.from_zarr`
    for a plain 2-D zarr array); netCDF files with
    ``xarray.open_dataset(path, chunks={})``.
    """
    import dask.array as da

    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or directory: {path}")
    fmt = input_format(path)
    if fmt == "npy":
        if variables or feature_dim or sample_dims:
            raise ValueError(f"{path} is a plain .npy array: --variable, --feature-dim and --sample-dims do not apply.")
        from .mixture import _default_chunk_rows

        array = NpyFile(path)
        if array.ndim != 2:
            raise ValueError(f"{path} holds a {array.ndim}-D array with shape {array.shape}; expected (n_samples, n_features).")
        rows = _default_chunk_rows(array.shape[0], array.shape[1], array.dtype.itemsize)
        return Input(path, fmt, X=da.from_array(array, chunks=(rows, -1), asarray=True, name=f"npy-{Path(path).name}-{os.stat(path).st_mtime_ns}"))
    import xarray as xr

    labelled = bool(variables) or feature_dim is not None
    if fmt == "zarr":
        if not labelled:
            try:
                return Input(path, fmt, X=da.from_zarr(path))
            except Exception:  # a group (an xarray Dataset): explain below
                pass
        ds = xr.open_zarr(path)
    else:
        from .io import check_regular_file

        check_regular_file(path, "a netCDF file")
        try:
            ds = xr.open_dataset(path, chunks={})
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot open {path} as netCDF: {exc}") from None
    chosen = _choose_labelled(ds, path, variables, feature_dim, sample_dims)
    chosen.format = fmt
    return chosen


# --------------------------------------------------------------------------
# Cluster, progress, messages
# --------------------------------------------------------------------------


LOCAL_SCHEDULERS = ("threads", "processes", "synchronous", "sync")
DEFAULT_CONNECT_TIMEOUT = 30.0


@contextlib.contextmanager
def compute_context(args, out=None):
    """A LocalCluster (default), a running scheduler (``--scheduler
    ADDRESS``) or one of Dask's local schedulers (``--scheduler threads``)."""
    import dask

    scheduler = getattr(args, "scheduler", None)
    scheduler_file = getattr(args, "scheduler_file", None)
    if scheduler in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=scheduler):
            _say(args, f"Dask scheduler: {scheduler} (no cluster)", out)
            yield None
        return
    from distributed import Client, LocalCluster

    if scheduler or scheduler_file:
        timeout = getattr(args, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        with _quiet_abandoned_gathers():
            if scheduler_file:
                address = _scheduler_file_address(scheduler_file, timeout)
                where = f"{address} from {scheduler_file}"
                connect = {"scheduler_file": scheduler_file}
            else:
                address = where = scheduler
                connect = {"address": scheduler}
            try:
                client = Client(**connect, timeout=timeout)
            except OSError as exc:
                raise OSError(f"cannot connect to the Dask scheduler {where}: {exc}") from None
            with client:
                _say(args, f"Dask scheduler: {where} ({len(client.scheduler_info().get('workers', {}))} workers)", out)
                yield client
        return
    kwargs = {
        "processes": True,
        "dashboard_address": args.dashboard_address,
        # A task's error reaches the client, which reports it in one line:
        # the workers' own "Compute Failed" record (logged at ERROR) would
        # repeat it with a traceback.
        "silence_logs": logging.CRITICAL,
    }
    if args.workers is not None:
        kwargs["n_workers"] = args.workers
    if args.threads_per_worker is not None:
        kwargs["threads_per_worker"] = args.threads_per_worker
    if args.memory_limit is not None:
        kwargs["memory_limit"] = args.memory_limit
    import dask

    from ._engine.runtime import worker_environ_config

    with dask.config.set(worker_environ_config()):
        with _workers_ignore_interrupts():
            cluster = LocalCluster(**kwargs)
        with _quiet_abandoned_gathers(), cluster, Client(cluster) as client:
            n_workers = len(cluster.workers)
            threads = sum(client.nthreads().values())
            _say(args, f"Dask LocalCluster: {n_workers} workers, {threads} threads, {_dashboard(client)}", out)
            yield client


def _dashboard(client):
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:  # the link would show an error page
        return "no dashboard (it needs bokeh: pip install bokeh)"
    return f"dashboard {client.dashboard_link}"


def _scheduler_file_address(path, timeout):
    """The address in the scheduler file ``path`` (what ``dask scheduler
    --scheduler-file``, dask-mpi and dask-jobqueue write), waiting up to
    ``timeout`` seconds for the file to appear: a batch script may start the
    scheduler just before this command."""
    deadline = time.monotonic() + timeout
    unreadable_since = None
    while True:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                raise FileNotFoundError(
                    f"no scheduler file {path} (waited {timeout:g} s for a Dask scheduler to write it; "
                    "--connect-timeout sets the wait)"
                ) from None
            time.sleep(0.1)
            continue
        if not stat.S_ISREG(mode):  # never open a FIFO: it would wait
            raise ValueError(f"the scheduler file {path} is not a regular file.")
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
            address = document["address"]
            if not isinstance(address, str):
                raise TypeError
            return address
        except OSError as exc:
            raise OSError(f"cannot read the scheduler file {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError):
            # Read while being written, maybe: read again for a second.
            now = time.monotonic()
            unreadable_since = now if unreadable_since is None else unreadable_since
            if now >= min(deadline, unreadable_since + 1.0):
                raise ValueError(
                    f"{path} is not a Dask scheduler file: it holds no JSON object with an 'address'."
                ) from None
            time.sleep(0.1)


class _AbandonedGather(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" record of the
    waits of a gather that Ctrl-C abandoned (distributed's ``AllExit``),
    logged with a traceback as the client closes."""

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        return type(error).__name__ != "AllExit"


@contextlib.contextmanager
def _quiet_abandoned_gathers():
    import gc

    log = logging.getLogger("asyncio")
    quiet = _AbandonedGather()
    log.addFilter(quiet)
    try:
        yield
    finally:
        gc.collect()  # the abandoned tasks report when collected: while the filter is on
        log.removeFilter(quiet)


@contextlib.contextmanager
def _workers_ignore_interrupts():
    """Start worker processes with SIGINT ignored, a disposition they keep
    across exec: Ctrl-C in a terminal signals the whole foreground process
    group, and each worker would print its own KeyboardInterrupt traceback
    while this process, which alone handles it, closes the cluster.  A
    Ctrl-C while the workers start is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _say(args, message, out=None):
    if not getattr(args, "quiet", False):
        print(message, file=out or sys.stderr, flush=True)


class Progress(Monitor):
    """The commands' display: a :class:`daskgmm._monitor.Monitor` configured
    for the command line.

    While enabled (until :meth:`close`), the ``daskgmm`` logger's INFO
    records are written to ``out`` (stderr): the per-iteration record of the
    fit's own monitor as :func:`daskgmm._monitor.iteration_line`, others as
    their message, with a progress bar (tqdm if installed) only when ``out``
    is a terminal.  Given to the fit as one of its ``callbacks``, it logs
    nothing itself.
    """

    def __init__(self, max_iter, *, enabled=True, out=None):
        super().__init__(max_iter=max_iter, log=False, lines_to=(out or sys.stderr) if enabled else None)


def _fit_with_progress(model, source, args, sample_weight=None):
    """Fit ``model`` on ``source`` (weighted by ``sample_weight``, from
    :meth:`Input.sample_weight`) with a progress display; warnings become
    one-line messages on stderr."""
    progress = Progress(model.max_iter, enabled=not args.quiet)
    _say(args, f"initialising {model.n_components} components ({model.init_params}) ...")
    tic = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if source.labelled:
                from . import xarray as dxr

                dxr.fit(
                    model, source.data, source.feature_dim, source.sample_dims,
                    variables=source.variables, sample_weight=sample_weight, callbacks=[progress],
                    checkpoint=getattr(args, "checkpoint", None),
                )
            else:
                from .mixture import _fit_rows

                _fit_rows(
                    model, source.X, sample_weight=sample_weight, callbacks=[progress],
                    checkpoint=getattr(args, "checkpoint", None),
                )
    finally:
        progress.close()
    for warning in caught:
        print(f"{PROG}: warning: {str(warning.message).splitlines()[0]}", file=sys.stderr)
    return time.perf_counter() - tic


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def _fmt_vector(values, digits=4):
    return "[" + ", ".join(f"{v:.{digits}g}" for v in np.ravel(values)) + "]"


def component_stds(covariances, covariance_type, n_components, n_features):
    """Standard deviation along each feature, (K, D), for any covariance type."""
    from ._covariance import covariance_model

    return np.sqrt(covariance_model(covariance_type).variances(np.asarray(covariances), n_components, n_features))


def component_table(weights, means, covariances, covariance_type, order=None):
    """Lines: one per component with weight, mean and standard deviations."""
    k, d = np.asarray(means).shape
    stds = component_stds(covariances, covariance_type, k, d)
    order = range(k) if order is None else order
    lines = [f"  {'comp':>4}  {'weight':>7}  {'mean':<32}  std (per feature)"]
    for j in order:
        lines.append(f"  {j:>4}  {weights[j]:7.4f}  {_fmt_vector(means[j]):<32}  {_fmt_vector(stds[j], 3)}")
    return lines


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def default_model_path(input_path):
    stem = Path(os.fspath(input_path).rstrip("/\\"))
    return os.fspath(stem.with_name(stem.stem + ".daskgmm.npz"))


OVERWRITE_HINT = "pass --overwrite to replace it."


def _is_labels_store(path):
    """Whether the folder ``path`` is a zarr store that ``daskgmm predict``
    wrote (its root attributes say ``created_by``: daskgmm, in zarr format 3
    or 2): the only folder ``--overwrite`` replaces."""
    for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
        document_path = os.path.join(path, name)
        if not os.path.isfile(document_path):  # never open a FIFO: it would wait
            continue
        try:
            with open(document_path, encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, ValueError):
            continue
        attrs = document.get(key) if key and isinstance(document, dict) else document
        if isinstance(attrs, dict) and attrs.get("created_by") == PROG:
            return True
    return False


LABELS_STORE = ("a zarr store written by daskgmm predict", _is_labels_store)


def _check_writable(path, overwrite, *, keep=(), store=None):
    """Refuse an output that exists (without --overwrite), that --overwrite
    may not replace (anything but a file, or ``store``: a folder output's
    own kind, see :func:`daskgmm.io.check_replaceable`), or that is, holds
    or lies inside one of ``keep`` (``(what, path)`` pairs: the inputs)."""
    from .io import check_replaceable, same_or_nested

    for what, kept in keep:
        if kept is not None and same_or_nested(path, kept):
            raise ValueError(
                f"the output {path} would replace or lie inside the {what} {kept}; write it to another path."
            )
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; {OVERWRITE_HINT}")
    check_replaceable(path, store=store)


@contextlib.contextmanager
def _staged(path, overwrite, *, directory=False, store=None):
    """A temporary path beside ``path`` to write the output to; moved into
    place when the block ends without error (never replacing an existing
    ``path`` without ``overwrite``), removed otherwise, so an interrupted
    command leaves any previous output as it was."""
    from .io import discard, publish, temporary_path

    tmp = temporary_path(path, directory=directory)
    try:
        yield tmp
        publish(tmp, path, overwrite=overwrite, hint=OVERWRITE_HINT, store=store)
    except BaseException:
        discard(tmp)
        raise


def cmd_fit(args):
    inputs = list(args.input)
    if args.online:
        return _cmd_fit_online(args, inputs)
    if len(inputs) > 1:
        raise ValueError(f"{len(inputs)} inputs given: fit one input, or stream several with --online.")
    args.input = inputs[0]
    out_path = args.out or default_model_path(args.input)
    weights_file = args.sample_weight if Path(args.sample_weight or "").suffix.lower() == ".npy" else None
    inputs_kept = [("input", args.input), ("checkpoint", args.checkpoint), ("sample weights", weights_file)]
    _check_writable(out_path, args.overwrite, keep=inputs_kept)
    if args.plot is not None:
        from .plot import _require_matplotlib

        _require_matplotlib()  # before computing
        _check_writable(args.plot, args.overwrite, keep=[*inputs_kept, ("model", out_path)])
    if args.checkpoint is not None:
        from .io import same_or_nested

        if same_or_nested(args.checkpoint, args.input):
            raise ValueError(
                f"the checkpoint {args.checkpoint} would replace or lie inside the input {args.input}; "
                "choose another checkpoint path."
            )
    model = _model_of(args)
    with compute_context(args):
        source = open_input(
            args.input, variables=_split_names(args.variable), feature_dim=args.feature_dim,
            sample_dims=_split_names(args.sample_dims),
        )
        sample_weight, weighted_by = source.sample_weight(args.sample_weight)
        if weighted_by is not None:
            _say(args, f"samples weighted by {args.sample_weight}")
        seconds = _fit_with_progress(model, source, args, sample_weight=sample_weight)
        layout = source.layout()
        # Drawn while the data are reachable (a cluster's storage); written after the model.
        figure = fit_figure(model, source, seconds) if args.plot is not None else None
    n_skipped = model.n_samples_skipped_ if source.labelled else 0
    if n_skipped is not None:  # not counted with sample weights
        layout["n_samples_skipped"] = int(n_skipped)
    if weighted_by is not None:
        layout["sample_weight"] = weighted_by
    _save_model(model, out_path, args.overwrite, layout)
    state = "converged" if model.converged_ else "did NOT converge"
    print(
        f"fitted {model.n_components} components ({model.covariance_type}) with {model.n_features_in_} features "
        f"in {seconds:.2f} s: {state} after {model.n_iter_} iterations, lower bound {model.lower_bound_:.6f} "
        f"({model.n_passes_} passes over the data)"
    )
    if source.labelled:
        print(
            f"skipped {n_skipped} samples with a missing (NaN) feature" if n_skipped is not None
            else "skipped the samples with a missing (NaN) feature (not counted with sample weights)"
        )
    if weighted_by is not None:
        print(f"samples weighted by {args.sample_weight}")
    if not args.quiet:
        print("\n".join(component_table(model.weights_, model.means_, model.covariances_, model.covariance_type)))
    print(f"saved model to {out_path}")
    if figure is not None:
        write_figure(figure, args.plot, overwrite=args.overwrite)
        print(f"plot written to {args.plot}")
    return 0


def _save_model(model, path, overwrite, layout):
    """Save the fitted ``model`` with its ``input`` record; a file that
    appeared at ``path`` during the fit is kept, and the error gives the
    command's option."""
    from .io import save_model

    try:
        save_model(model, path, overwrite=overwrite, extra={"input": layout})
    except FileExistsError as exc:
        if exc.filename != path:
            raise
        raise FileExistsError(errno.EEXIST, f"{path} already exists; {OVERWRITE_HINT}", path) from None


def _model_of(args, **settings):
    """The GaussianMixture ``daskgmm fit``'s options describe (plus
    ``settings``), its parameters checked before any cluster starts."""
    from .mixture import GaussianMixture

    model = GaussianMixture(
        n_components=args.n_components,
        covariance_type=args.covariance_type,
        tol=args.tol,
        reg_covar=args.reg_covar,
        max_iter=args.max_iter,
        n_init=args.n_init,
        init_params=args.init_params,
        random_state=args.random_state,
        missing=getattr(args, "missing", "error"),
        noise=getattr(args, "noise", None),
        m_step_max_iter=args.m_step_max_iter,
        m_step_tol=args.m_step_tol,
        **settings,
    )
    model._validate_params()
    return model


def _cmd_fit_online(args, inputs):
    """``daskgmm fit --online IN [IN ...]``: online EM over the inputs, each
    one batch of :meth:`daskgmm.GaussianMixture.partial_fit` (plain inputs)
    or :func:`daskgmm.xarray.partial_fit` (labelled stores, matched to the
    first one's features by label; samples with a missing feature dropped,
    or marginalised with ``--missing marginalize``)."""
    for option, value in (
        ("--checkpoint", args.checkpoint), ("--sample-weight", args.sample_weight), ("--plot", args.plot),
        ("--noise", args.noise),
    ):
        if value is not None:
            raise ValueError(f"{option} is not supported with --online.")
    if args.online_mode == "exact" and args.max_iter < 1:
        # Zero passes would read no input and leave no model to save.
        raise ValueError(
            f"--max-iter must be >= 1 with --online-mode exact (each pass over the inputs is one EM iteration), "
            f"got {args.max_iter}."
        )
    out_path = args.out or default_model_path(inputs[0])
    _check_writable(out_path, args.overwrite, keep=[("input", path) for path in inputs])
    model = _model_of(
        args, partial_fit_mode=args.online_mode, learning_decay=args.learning_decay,
        learning_offset=args.learning_offset,
    )
    passes = args.epochs if args.online_mode == "stepwise" else args.max_iter
    skipped = 0
    first_layout = None
    tic = time.perf_counter()
    with compute_context(args):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for epoch in range(passes):
                for path in inputs:
                    source = open_input(path, variables=_split_names(args.variable), feature_dim=args.feature_dim,
                                        sample_dims=_split_names(args.sample_dims))
                    if first_layout is None:
                        first_layout = source.layout()
                    if source.labelled:
                        from . import xarray as dxr

                        dxr.partial_fit(
                            model, source.data, source.feature_dim, source.sample_dims, variables=source.variables
                        )
                        skipped += int(model.n_samples_skipped_ or 0)
                    else:
                        model.partial_fit(source.X)
                if args.online_mode == "exact":
                    model.end_pass()
                    _say(args, f"pass {epoch + 1}: lower bound {model.lower_bound_:.6f}")
                    if model.converged_:
                        break
                else:
                    _say(args, f"epoch {epoch + 1}: {model.n_batch_iter_} batches, {model.n_samples_seen_:.0f} samples")
    for warning in caught:
        print(f"{PROG}: warning: {str(warning.message).splitlines()[0]}", file=sys.stderr)
    seconds = time.perf_counter() - tic
    # The first input's layout (how predict reads a labelled store), and the stream.
    layout = {**(first_layout if first_layout.get("labelled") else {}),
              "online": {"inputs": [os.fspath(path) for path in inputs], "mode": args.online_mode,
                         "batches": int(model.n_batch_iter_), "n_samples_skipped": skipped}}
    _save_model(model, out_path, args.overwrite, layout)
    if args.online_mode == "exact":
        state = f"{'converged' if model.converged_ else 'did NOT converge'} after {model.n_iter_} passes"
    else:
        state = f"{model.n_batch_iter_} stepwise updates"
    print(
        f"fitted {model.n_components} components ({model.covariance_type}) online over {len(inputs)} inputs "
        f"in {seconds:.2f} s: {state}, {model.n_samples_seen_:.0f} samples seen, lower bound {model.lower_bound_:.6f}"
    )
    if skipped:
        print(f"skipped {skipped} samples with a missing (NaN) feature")
    if not args.quiet:
        print("\n".join(component_table(model.weights_, model.means_, model.covariances_, model.covariance_type)))
    print(f"saved model to {out_path}")
    return 0


def _output_format(path):
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix == ".zarr":
        return "zarr"
    if suffix in NETCDF_SUFFIXES:
        return "netcdf"
    raise ValueError(f"cannot tell the output format of {path}: use .npy, .zarr or .nc.")


def _default_predict_path(input_path, source):
    stem = Path(os.fspath(input_path).rstrip("/\\"))
    suffix = {"zarr": ".zarr", "netcdf": ".nc"}.get(source.format, ".npy") if source.labelled else ".npy"
    return os.fspath(stem.with_name(stem.stem + ".labels" + suffix))


def _check_text(path, field, value):
    from .io import invalid

    if value is not None and not isinstance(value, str):
        raise invalid(path, field, f"is {value!r}, not a string")


def _check_names(path, field, value):
    from .io import invalid

    if value is not None and not (isinstance(value, list) and all(isinstance(name, str) for name in value)):
        raise invalid(path, field, f"is {value!r}, not a list of names")


def _check_record(path, field, value):
    from .io import invalid

    if not isinstance(value, dict):
        raise invalid(path, field, f"is {type(value).__name__}, not a JSON object")
    return value


def _saved_input(path, meta):
    """The ``input`` record of the model saved at ``path`` (what ``daskgmm
    fit`` wrote: :meth:`Input.layout`, the counts, the weights, the online
    stream; ``{}`` if none), each entry's type checked before ``predict`` or
    ``info`` reads it: a ValueError names the first malformed one."""
    from .io import check_integer, invalid

    record = meta.get("input")
    if record is None:
        return {}
    _check_record(path, "input", record)
    for name in ("source", "format", "feature_dim"):
        _check_text(path, f"input.{name}", record.get(name))
    for name in ("variables", "sample_dims", "features"):
        _check_names(path, f"input.{name}", record.get(name))
    if not isinstance(record.get("labelled", False), bool):
        raise invalid(path, "input.labelled", f"is {record['labelled']!r}, not true or false")
    if "n_samples_skipped" in record:
        check_integer(path, "input.n_samples_skipped", record["n_samples_skipped"], minimum=0)
    weight = record.get("sample_weight")
    if weight is not None:
        _check_record(path, "input.sample_weight", weight)
        for name in ("variable", "source", "format"):
            _check_text(path, f"input.sample_weight.{name}", weight.get(name))
        _check_names(path, "input.sample_weight.dims", weight.get("dims"))
    online = record.get("online")
    if online is not None:
        _check_record(path, "input.online", online)
        _check_names(path, "input.online.inputs", online.get("inputs"))
        _check_text(path, "input.online.mode", online.get("mode"))
        for name in ("batches", "n_samples_skipped"):
            if name in online:
                check_integer(path, f"input.online.{name}", online[name], minimum=0)
    return record


def cmd_predict(args):
    import dask
    import xarray as xr

    from . import xarray as dxr
    from .io import load, read_archive

    model = load(args.model)
    _, meta = read_archive(args.model)
    saved = _saved_input(args.model, meta)
    variables = _split_names(args.variable)
    feature_dim, sample_dims = args.feature_dim, _split_names(args.sample_dims)
    if saved.get("labelled") and not (variables or feature_dim):
        # Same layout as at fit time unless told otherwise.
        variables, feature_dim = saved.get("variables"), saved.get("feature_dim")
        sample_dims = sample_dims or saved.get("sample_dims")
    with compute_context(args):
        source = open_input(args.input, variables=variables, feature_dim=feature_dim, sample_dims=sample_dims)
        out_path = args.out or _default_predict_path(args.input, source)
        store = LABELS_STORE if Path(out_path).suffix.lower() == ".zarr" else None
        _check_writable(out_path, args.overwrite, keep=[("input", args.input), ("model", args.model)], store=store)
        out_format = _output_format(out_path)
        if source.labelled:
            where = (source.data, source.feature_dim, source.sample_dims)
            kwargs = {"variables": source.variables}
            outputs = {"label": dxr.predict(model, *where, **kwargs)}
            if args.score:
                outputs["log_likelihood"] = dxr.score_samples(model, *where, **kwargs)
            if args.proba:
                outputs["probability"] = dxr.predict_proba(model, *where, **kwargs)
        else:
            outputs = {"label": model.predict(source.X)}
            if args.score:
                outputs["log_likelihood"] = model.score_samples(source.X)
            if args.proba:
                outputs["probability"] = model.predict_proba(source.X)
            # The attributes and component coordinate daskgmm.xarray's outputs carry.
            outputs = {
                name: xr.DataArray(
                    values, dims=("sample", dxr.COMPONENT_DIM)[: values.ndim], name=name,
                    attrs=dict(dxr.OUTPUT_ATTRS[name]),
                    coords={dxr.COMPONENT_DIM: np.arange(values.shape[1])} if values.ndim == 2 else None,
                )
                for name, values in outputs.items()
            }
        labels = outputs["label"]
        n_missing = (labels == -1).sum().data
        if out_format == "npy" and len(outputs) > 1:
            raise ValueError("--proba and --score need a .zarr or .nc output; a .npy output holds labels only.")
        # Written beside the target and moved into place once complete: an
        # existing output stays whole until then (Ctrl-C, a crash, an error).
        with _staged(out_path, args.overwrite, directory=out_format == "zarr", store=store) as tmp:
            if out_format == "npy":
                values, n_missing = dask.compute(labels.data, n_missing)
                with open(tmp, "wb") as handle:
                    np.save(handle, values)
            else:
                ds = xr.Dataset(outputs)
                ds.attrs.update(model=os.path.abspath(args.model), source=os.path.abspath(args.input), created_by=PROG)
                for variable in ds.variables.values():
                    variable.encoding = {}
                if out_format == "zarr":
                    job = ds.to_zarr(tmp, mode="w", compute=False)
                else:
                    job = ds.to_netcdf(tmp, compute=False)
                _, n_missing = dask.compute(job, n_missing)
    dims = ", ".join(map(str, labels.dims))
    print(f"wrote labels ({dims}) of {labels.size} samples to {out_path}; {int(n_missing)} without a label (-1)")
    return 0


def cmd_info(args):
    from .io import load, read_archive

    model = load(args.model)
    _, meta = read_archive(args.model)
    source = _saved_input(args.model, meta)
    if args.json:
        print(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    fit = meta.get("fit", {})
    print(f"{args.model}: {meta['format']} format version {meta['format_version']}, written by daskgmm {meta.get('daskgmm_version', '?')}")
    print(
        f"  {model.n_components} components, {model.n_features_in_} features, covariance_type={model.covariance_type}"
    )
    state = "converged" if fit.get("converged") else "did not converge"
    print(f"  fit: {state} after {fit.get('n_iter')} iterations, lower bound {fit.get('lower_bound'):.6f}")
    if getattr(model, "noise_volume_", None) is not None:
        print(
            f"  noise component: weight {model.noise_weight_:.6g}, volume {model.noise_volume_:.6g} "
            f"(label {model.n_components})"
        )
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(meta.get("params", {}).items()) if v is not None)
    print(f"  parameters: {params}")
    if source:
        text = f"  input: {source.get('source')} ({source.get('format')})"
        if source.get("labelled"):
            text += f", feature_dim={source.get('feature_dim')!r}"
            if source.get("variables"):
                text += f", variables={source['variables']}"
            if source.get("features"):
                text += f", features={source['features']}"
            if "n_samples_skipped" in source:  # not counted with sample weights
                text += f", {source['n_samples_skipped']} samples skipped"
        weighted_by = source.get("sample_weight")
        if weighted_by:
            text += f", weighted by {weighted_by.get('variable') or weighted_by.get('source')}"
        print(text)
    print("\n".join(component_table(model.weights_, model.means_, model.covariances_, model.covariance_type)))
    return 0


# Demo ----------------------------------------------------------------------

DEMO_WEIGHTS = np.array([0.45, 0.35, 0.20])
DEMO_MEANS = np.array([[0.0, 0.0], [6.0, 2.0], [1.0, 7.0]])
DEMO_COVARIANCES = np.array(
    [
        [[2.0, 0.8], [0.8, 1.0]],
        [[1.0, -0.6], [-0.6, 1.5]],
        [[0.5, 0.0], [0.0, 2.5]],
    ]
)


def demo_data(n_samples, seed=0):
    """The demo's synthetic 3-component 2-D mixture: X (n, 2), true labels."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(DEMO_WEIGHTS), size=n_samples, p=DEMO_WEIGHTS)
    X = np.empty((n_samples, 2))
    for j, (mean, cov) in enumerate(zip(DEMO_MEANS, DEMO_COVARIANCES)):
        rows = labels == j
        X[rows] = rng.multivariate_normal(mean, cov, size=int(rows.sum()))
    return X, labels


def match_components(means, true_means):
    """Index of the fitted component matching each true one (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    cost = ((true_means[:, None, :] - means[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def write_figure(fig, path, *, overwrite=False):
    """Write a matplotlib Figure with the Agg canvas (the format from the
    suffix of ``path``, PNG if none), atomically, never replacing an
    existing file unless ``overwrite``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with _staged(path, overwrite) as tmp:
        fig.savefig(tmp, format=Path(path).suffix[1:].lower() or "png")
    return path


def _plot_rows(model, source):
    """The (n_samples, n_features) rows the model was fitted on: the plain
    input, or the labelled input's samples (its features chosen as the fit
    chose them: a Dataset's variables are the model's feature names)."""
    if not source.labelled:
        return source.X
    from .xarray import _import_xarray, stack_samples

    variables = source.variables
    if isinstance(source.data, _import_xarray().Dataset):
        variables = [str(name) for name in model.feature_names_in_]
    return stack_samples(source.data, source.feature_dim, source.sample_dims, variables=variables)[0]


def fit_figure(model, source, seconds):
    """``daskgmm fit --plot``: the components' 2-sigma ellipses over a
    sample of the data (its two features, or the first two principal axes
    of the mixture beyond two features) and the lower bound per iteration."""
    from matplotlib.figure import Figure

    from . import plot

    n_features = model.n_features_in_
    fig = Figure(figsize=(13, 5.5) if n_features > 1 else (6.5, 5.5), dpi=100, layout="constrained")
    fig.suptitle(
        f"daskgmm fit {Path(source.path).name}: {model.n_components} components ({model.covariance_type}), "
        f"{n_features} features, {seconds:.1f} s"
    )
    if n_features > 1:
        left, right = fig.subplots(1, 2)
        plot.ellipses(model, _plot_rows(model, source), features=(0, 1) if n_features == 2 else "pca", ax=left)
        left.set_title("components (2σ) over a sample of the data")
    else:
        right = fig.subplots()
    plot.convergence(model, ax=right)
    right.set_title("lower bound per EM iteration")
    return fig


def demo_plot(path, X, model, order, *, overwrite=False):
    """Scatter of a sample of X coloured by fitted label, with the fitted
    (solid) and true (dashed) 2-sigma ellipses; written with the Agg canvas
    (the format from the suffix of ``path``, PNG if none), never replacing an
    existing file unless ``overwrite``."""
    from matplotlib.figure import Figure

    from . import plot

    fig = Figure(figsize=(7, 6), dpi=100)
    ax = fig.add_subplot()
    plot.ellipses(model, X, ax=ax, n_std=2.0, random_state=1)
    for true_j, fitted_j in enumerate(order):
        plot._add_ellipse(
            ax, DEMO_MEANS[true_j], DEMO_COVARIANCES[true_j], 2.0, edgecolor="black", linestyle="--", linewidth=1.2,
            label="true 2σ" if true_j == 0 else None,
        )
    ax.plot(*DEMO_MEANS.T, "+", color="black", markersize=12, markeredgewidth=2, label="true means")
    ax.set_title(f"daskgmm demo: {X.shape[0]} samples, {model.n_components} components (2σ ellipses)")
    ax.legend(loc="upper right", fontsize="small")
    return write_figure(fig, path, overwrite=overwrite)


def cmd_demo(args):
    import dask.array as da

    from ._covariance import FULL
    from .mixture import GaussianMixture

    if args.n_samples < 100:
        raise ValueError(f"--n-samples must be at least 100, got {args.n_samples}.")
    if args.plot:
        _check_writable(args.plot, args.overwrite)  # before computing
    print(f"daskgmm demo: a {len(DEMO_WEIGHTS)}-component 2-D Gaussian mixture, {args.n_samples} samples (seed {args.random_state})")
    X, _ = demo_data(args.n_samples, seed=args.random_state)
    model = GaussianMixture(
        len(DEMO_WEIGHTS), covariance_type=FULL.name, tol=args.tol, max_iter=args.max_iter, random_state=args.random_state
    )
    with compute_context(args, out=sys.stdout):
        n_chunks = max(1, min(args.chunks, args.n_samples // 50))
        dX = da.from_array(X, chunks=(-(-args.n_samples // n_chunks), -1))
        source = Input("demo", "memory", X=dX)
        seconds = _fit_with_progress(model, source, args)
    order = match_components(model.means_, DEMO_MEANS)
    state = "converged" if model.converged_ else "did NOT converge"
    print(
        f"fit: {state} after {model.n_iter_} iterations in {seconds:.2f} s "
        f"({model.n_passes_} passes over {dX.numblocks[0]} chunks), lower bound {model.lower_bound_:.6f}"
    )
    true_stds = component_stds(DEMO_COVARIANCES, FULL, 3, 2)
    fitted_stds = component_stds(model.covariances_, FULL, 3, 2)
    def pair(values):
        return "[" + ", ".join(f"{v:6.3f}" for v in values) + "]"

    print("components, true vs fitted (fitted matched to the true ones by their means):")
    print(f"  {'comp':>4}  {'weight':^15}  {'mean':^33}  {'std per feature':^33}  {'correlation':^15}")
    print(f"  {'':>4}  {'true':>7} {'fitted':>7}  {'true':^16} {'fitted':^16}  {'true':^16} {'fitted':^16}  {'true':>7} {'fitted':>7}")
    for true_j, fitted_j in enumerate(order):
        tc, fc = DEMO_COVARIANCES[true_j], model.covariances_[fitted_j]
        print(
            f"  {true_j:>4}  {DEMO_WEIGHTS[true_j]:7.3f} {model.weights_[fitted_j]:7.3f}  "
            f"{pair(DEMO_MEANS[true_j])} {pair(model.means_[fitted_j])}  "
            f"{pair(true_stds[true_j])} {pair(fitted_stds[fitted_j])}  "
            f"{tc[0, 1] / np.sqrt(tc[0, 0] * tc[1, 1]):+7.3f} {fc[0, 1] / np.sqrt(fc[0, 0] * fc[1, 1]):+7.3f}"
        )
    error = float(np.max(np.abs(model.means_[order] - DEMO_MEANS)))
    print(f"largest error on a mean coordinate: {error:.4f}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print('note: matplotlib is not installed, no plot written (pip install "daskgmm[plot]")')
        else:
            demo_plot(args.plot, X, model, order, overwrite=args.overwrite)
            print(f"plot written to {args.plot}")
    return 0


# --------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------


def _add_cluster_options(parser, default_workers=None, default_threads=None):
    group = parser.add_argument_group("where to compute")
    running = group.add_mutually_exclusive_group()
    running.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="address of a running Dask scheduler (e.g. tcp://10.0.0.1:8786), or one of "
        f"{', '.join(LOCAL_SCHEDULERS)} for Dask's local schedulers without a cluster; "
        "default: start a LocalCluster",
    )
    running.add_argument(
        "--scheduler-file", metavar="PATH",
        help="connect to the running Dask scheduler this file names (the JSON file written by "
        "'dask scheduler --scheduler-file', dask-mpi or dask-jobqueue), waiting for it to appear",
    )
    group.add_argument(
        "--connect-timeout", type=_positive_float, default=DEFAULT_CONNECT_TIMEOUT, metavar="SECONDS",
        help="how long to wait for a running scheduler (--scheduler ADDRESS, --scheduler-file) to answer, "
        "and for the scheduler file to appear (default: %(default)g)",
    )
    group.add_argument(
        "--workers", type=_positive_int, default=default_workers, metavar="N",
        help="LocalCluster worker processes (default: %s)" % (default_workers or "Dask's choice from the CPU count"),
    )
    group.add_argument(
        "--threads-per-worker", type=_positive_int, default=default_threads, metavar="N",
        help="threads per LocalCluster worker (default: %s)" % (default_threads or "Dask's choice"),
    )
    group.add_argument(
        "--memory-limit", type=_memory_limit, metavar="BYTES",
        help="memory limit per LocalCluster worker, e.g. 4GB or 'auto' (default: Dask's share of the RAM)",
    )
    group.add_argument(
        "--dashboard-address", default=":0", metavar="ADDR",
        help="LocalCluster dashboard address (default ':0', a free port; ':8787' for the usual one)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, per-iteration lines or tables")


def _add_layout_options(parser):
    group = parser.add_argument_group("labelled input (zarr / netCDF)")
    group.add_argument(
        "--variable", action="append", metavar="NAME",
        help="variable to read; several (repeat, or A,B,C) are used as the features",
    )
    group.add_argument("--feature-dim", metavar="DIM", help="dimension holding the features (e.g. band)")
    group.add_argument(
        "--sample-dims", action="append", metavar="DIMS",
        help="dimensions indexing samples, e.g. time,y,x (default: all but the feature dimension)",
    )


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _noise(text):
    """``--noise``: 'box' or a positive hypervolume."""
    return text if text == "box" else _positive_float(text)


def _memory_limit(text):
    """What LocalCluster's ``memory_limit`` accepts, checked here so that a
    mistake names its option: a byte count (4GB, 4e9), a fraction of the
    RAM (0.5), 0 (no limit) or 'auto'."""
    from dask.utils import parse_bytes

    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_bytes(text)
        except ValueError:
            value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a size such as 4GB or 4e9 bytes, a fraction of the memory such as 0.5, 0 for no limit, "
            f"or 'auto'; got {text!r}"
        )
    return text


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Gaussian Mixture Models fitted by EM on a Dask cluster (scikit-learn's answers).",
        epilog="Run 'daskgmm COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_fit_command(commands)
    _add_predict_command(commands)
    _add_info_command(commands)
    _add_demo_command(commands)
    return parser


def _add_fit_command(commands):
    """``daskgmm fit``'s options."""
    from ._covariance import COVARIANCE_TYPES, DEFAULT_COVARIANCE_TYPE, DEFAULT_M_STEP_CONTROL
    from ._init import INIT_PARAMS

    fit = commands.add_parser(
        "fit", help="fit a mixture on a .npy, zarr or netCDF input and save the model",
        description="Fit a Gaussian mixture by EM and save it (daskgmm.load reads it back). "
        "Labelled input: samples with a NaN feature are skipped and counted.",
    )
    fit.add_argument(
        "input", nargs="+",
        help="a .npy file (n_samples, n_features), a zarr store or a netCDF file; with --online, several "
        "plain inputs, streamed in that order",
    )
    fit.add_argument("-k", "--n-components", type=_positive_int, required=True, metavar="K", help="number of components")
    fit.add_argument(
        "--covariance-type", choices=COVARIANCE_TYPES, default=DEFAULT_COVARIANCE_TYPE,
        help=f"default: {DEFAULT_COVARIANCE_TYPE}",
    )
    fit.add_argument("--max-iter", type=int, default=100, metavar="N", help="EM iterations at most (default: 100)")
    fit.add_argument("--tol", type=_non_negative_float, default=1e-3, help="convergence threshold on the lower bound (default: 1e-3)")
    fit.add_argument("--reg-covar", type=_non_negative_float, default=1e-6, help="added to covariance diagonals (default: 1e-6)")
    fit.add_argument("--n-init", type=_positive_int, default=1, metavar="N", help="restarts, fitted together (default: 1)")
    fit.add_argument("--init-params", choices=INIT_PARAMS, default="kmeans", help="default: kmeans")
    fit.add_argument(
        "--m-step-max-iter", type=_positive_int, default=DEFAULT_M_STEP_CONTROL.max_iter, metavar="N",
        help="inner iterations at most of each M-step without a closed form (covariance types VEI VEE EVE VVE "
        f"VEV; a warning when they stop there) (default: {DEFAULT_M_STEP_CONTROL.max_iter})",
    )
    fit.add_argument(
        "--m-step-tol", type=_non_negative_float, default=DEFAULT_M_STEP_CONTROL.tol, metavar="T",
        help="those inner iterations stop when their relative change is below T "
        f"(default: {DEFAULT_M_STEP_CONTROL.tol:g})",
    )
    fit.add_argument("--random-state", type=int, default=None, metavar="SEED", help="seed for a reproducible fit")
    fit.add_argument("-o", "--out", metavar="MODEL_PATH", help="where to save the model (default: INPUT stem + .daskgmm.npz)")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing model file (and --plot file)")
    fit.add_argument(
        "--plot", metavar="PATH", default=None,
        help="also write a picture (PNG, or the format of PATH's suffix): the components' 2-sigma ellipses over a "
        "sample of the data (two features, or the first two principal axes beyond two) and the lower bound per "
        'iteration; needs matplotlib (pip install "daskgmm[plot]")',
    )
    fit.add_argument(
        "--sample-weight", metavar="SPEC", default=None,
        help="weight of each sample: a .npy file of one weight per row (plain input), or the name of a "
        "variable of the input over some of the sample dimensions, broadcast over the others (labelled "
        "input); weights are >= 0, 0 leaves a sample out; recorded in the saved model",
    )
    fit.add_argument(
        "--missing", choices=("error", "marginalize"), default="error",
        help="what a NaN feature means: 'error' (plain input; labelled input drops such samples) or "
        "'marginalize' (the sample is fitted on its observed features; only samples with every feature "
        "missing are left out); recorded in the saved model, whose predict does the same (default: error)",
    )
    fit.add_argument(
        "--noise", type=_noise, default=None, metavar="box|VOLUME",
        help="add a noise component (mclust's): a uniform density over the data's bounding box ('box') or over "
        "a region of the given hypervolume, with a weight of its own; predict labels the samples it explains "
        "best K, --proba writes K + 1 probabilities (default: no noise component)",
    )
    fit.add_argument(
        "--checkpoint", metavar="PATH", default=None,
        help="write the EM state to PATH after every iteration (atomically) and resume from it "
        "if it exists; a checkpoint of other data or settings is refused",
    )
    online = fit.add_argument_group("online EM: inputs that arrive in pieces")
    online.add_argument(
        "--online", action="store_true",
        help="fit with partial_fit over the inputs, one batch each, in order: stepwise EM (--online-mode "
        "stepwise, --epochs passes over the list) or exact EM (--online-mode exact: one M-step per pass over "
        "the list, until converged or --max-iter passes)",
    )
    online.add_argument("--online-mode", choices=("stepwise", "exact"), default="stepwise", help="default: stepwise")
    online.add_argument("--epochs", type=_positive_int, default=1, metavar="N",
                        help="stepwise mode: passes over the list of inputs (default: 1)")
    online.add_argument("--learning-decay", type=float, default=0.6, metavar="ALPHA",
                        help="stepwise step size (t + t0)^-ALPHA, ALPHA in (0.5, 1] (default: 0.6)")
    online.add_argument("--learning-offset", type=_non_negative_float, default=2.0, metavar="T0",
                        help="stepwise step-size offset t0 (default: 2.0)")
    _add_layout_options(fit)
    _add_cluster_options(fit)
    fit.set_defaults(handler=cmd_fit)


def _add_predict_command(commands):
    """``daskgmm predict``'s options."""
    predict = commands.add_parser(
        "predict", help="label every sample of an input with a saved model",
        description="Write the most probable component of every sample: a .npy of labels, or a zarr/netCDF "
        "dataset with the input's sample dimensions and coordinates (-1 where a feature is missing). "
        "The labelled layout used at fit time is the default.",
    )
    predict.add_argument("model", help="a model saved by 'daskgmm fit' or GaussianMixture.save")
    predict.add_argument("input", help="a .npy file, a zarr store or a netCDF file")
    predict.add_argument(
        "-o", "--out", metavar="PATH",
        help="output: .npy (labels only), .zarr or .nc (default: INPUT stem + .labels + the input's kind)",
    )
    predict.add_argument("--proba", action="store_true", help="also write the probabilities (zarr/netCDF output)")
    predict.add_argument("--score", action="store_true", help="also write the log-likelihood (zarr/netCDF output)")
    predict.add_argument(
        "--overwrite", action="store_true",
        help="replace an existing output file (a .zarr output: a store that predict wrote; never another folder)",
    )
    _add_layout_options(predict)
    _add_cluster_options(predict)
    predict.set_defaults(handler=cmd_predict)


def _add_info_command(commands):
    """``daskgmm info``'s options."""
    info = commands.add_parser(
        "info", help="show a saved model's metadata and parameters",
        description="Print a saved model's format, settings, convergence record and components.",
    )
    info.add_argument("model", help="a saved model file")
    info.add_argument("--json", action="store_true", help="print the metadata document as JSON")
    info.set_defaults(handler=cmd_info)


def _add_demo_command(commands):
    """``daskgmm demo``'s options."""
    demo = commands.add_parser(
        "demo", help="fit built-in sample data on a LocalCluster and show what was found",
        description="Generate a 3-component 2-D Gaussian mixture (fixed seed), fit it on a LocalCluster of "
        "2 workers, print the components found next to the true ones and write a plot.",
    )
    demo.add_argument("--n-samples", type=int, default=200_000, metavar="N", help="rows to generate (default: 200000)")
    demo.add_argument("--chunks", type=_positive_int, default=8, metavar="N", help="row chunks (default: 8)")
    demo.add_argument("--random-state", type=int, default=0, metavar="SEED", help="seed of data and fit (default: 0)")
    demo.add_argument("--tol", type=_non_negative_float, default=1e-4, help="convergence threshold (default: 1e-4)")
    demo.add_argument("--max-iter", type=int, default=200, metavar="N", help="EM iterations at most (default: 200)")
    demo.add_argument("--plot", default="daskgmm-demo.png", metavar="PATH", help="PNG to write (default: daskgmm-demo.png)")
    demo.add_argument("--no-plot", dest="plot", action="store_const", const=None, help="do not write a plot")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing plot file")
    _add_cluster_options(demo, default_workers=2, default_threads=1)
    demo.set_defaults(handler=cmd_demo)


def main(argv=None):
    """Entry point of the ``daskgmm`` command; returns the exit status."""
    # zarr 3 warns on every consolidated write; the store is still standard.
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as exc:
        print(f"{PROG}: error: {_error_message(exc)}", file=sys.stderr)
        return 1


def _error_message(exc):
    """``exc`` as one line for a user: an OSError's own text and the paths it
    does not already name, without ``[Errno N]`` and Python's quotes."""
    if isinstance(exc, OSError) and exc.strerror:
        message = exc.strerror
        paths = [os.fsdecode(name) for name in (exc.filename, exc.filename2) if name is not None]
        unnamed = [path for path in paths if not re.search(rf"(^|\s){re.escape(path)}($|[\s;:,])", message)]
        if unnamed:
            message = f"{message}: {' -> '.join(unnamed)}"
    elif isinstance(exc, ImportError) and not str(exc):
        message = f"missing module {exc.name}"
    else:
        message = str(exc)
    return " ".join(message.split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
