"""Saved models: a portable format that never executes code on load.

Format (``.npz``, version 1)
----------------------------
A NumPy ``.npz`` archive (a zip of ``.npy`` files), read with
``allow_pickle=False`` so loading can never run code:

* ``__daskgmm__``: a 0-d unicode array holding a JSON document with
  ``format`` ("daskgmm-model"), ``format_version`` (1), ``kind`` ("model" or
  "checkpoint"), ``daskgmm_version``, ``covariance_type``, ``n_components``,
  ``n_features``, ``dtype``, ``params`` (the estimator's constructor
  settings that are JSON-serialisable), ``params_repr`` (the others, as
  text, for information only: loading uses their defaults) and ``fit``
  (convergence record: ``converged``, ``n_iter``, ``lower_bound``,
  ``lower_bounds``, ``n_features_in``) plus any extra entries the writer
  adds (the command line adds ``input``: the layout of the data it fitted).
* one array per fitted parameter, in the model's float dtype (``dtype`` in
  the metadata: "float64", or "float32" for a model fitted on float32 data):
  ``weights``, ``means``, ``covariances``, ``precisions_cholesky``.  A
  BayesianGaussianMixture adds its posterior (``posterior_<name>``) and
  priors (``mean_prior``, ``covariance_prior``), float64, and ``estimator``
  and ``priors`` (the prior numbers) to the metadata.
* ``fit_history``, float64 (n_records, 5): ``history_``, one row per M-step
  of ``iteration``, ``lower_bound``, ``change``, ``seconds``, ``n_chunks``
  (absent in files written before it was kept).
* what continues a stream of ``partial_fit`` exactly, when the model has
  it: ``fit_statistics_<field>``, the merged statistics of the fit's last
  pass (the parameters are their M-step; a stepwise stream continuing the
  fit starts from them); the metadata's ``stream`` entry (``mode``,
  ``n_batch_iter``, ``n_samples_seen``, ``batch_offset``, ``n_chunks``,
  ``weight_scale``: the power of two an exact pass's statistics count the
  sample weights divided by, 1 when absent; null without a stream) and ``stream_statistics_<field>``, the running
  statistics of a stepwise stream or the merged statistics of an
  unfinished exact pass.  ``<field>`` is each of ``n_samples``,
  ``log_likelihood``, ``nk``, ``means``, ``scatter``, in the statistics'
  own dtype.  A file without them loads as a model without a stream.

Loading restores each array in the dtype it was saved in, so a loaded model
holds bitwise the arrays of the saved one.  It checks every field: the
metadata's types and their agreement with the arrays' shapes and dtypes, and
the arrays' values (finite; weights non-negative and summing to 1; precision
factors triangular with a positive diagonal; covariances symmetric with a
positive diagonal and the inverses of the precisions, to the precision of
the saved dtype).  Any failure is a ValueError naming the field.

Writing
-------
Files (and the command line's zarr stores) are written to a temporary path
in the target's folder and moved into place only when complete, so a crash
or Ctrl-C never leaves a half-written file and never removes the previous
one.  A new path is claimed with a hard link, which fails if the path
appeared meanwhile (two writers of one new path: one wins, the other gets
FileExistsError); an existing path is replaced only with ``overwrite=True``,
and only if it is a regular file (or a symbolic link to one: the file it
points to is replaced, the link kept, as ``open()`` writes through a link) or
a folder the caller recognises as an output of its own kind (the command
line's zarr stores); a directory, FIFO, socket or device is refused by name.
Files and folders get the permissions ``open()`` and ``mkdir()`` give
(``0o666`` / ``0o777`` less the umask).  Temporary names carry the writer's
host and process id: what a killed writer left is removed by the next writer
on that host, a live writer's is never touched.  Reading refuses anything but
a regular file before opening it (a FIFO would block the reader).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import numbers
import os
import shutil
import socket
import stat
import zipfile

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # io is imported by the estimators' modules: no import back at run time
    from .bayesian_mixture import BayesianGaussianMixture
    from .mixture import GaussianMixture

FORMAT = "daskgmm-model"
FORMAT_VERSION = 1
ARRAY_NAMES = ("weights", "means", "covariances", "precisions_cholesky")
METADATA = "__daskgmm__"


# --------------------------------------------------------------------------
# Temporary paths and atomic placement
# --------------------------------------------------------------------------


def _host_tag():
    # Eight hex digits: a hostname may hold characters a file name should not.
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temporary_prefix(path):
    return f".{os.path.basename(path)}.daskgmm-"


def _process_alive(pid):
    if os.name == "nt":  # os.kill(pid, 0) would stop the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def remove_stale_temporaries(path):
    """Remove the temporary files of ``path`` that writers on this host left
    when they were killed (their process is gone); those of live writers
    and of other hosts stay."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix = _temporary_prefix(path)
    host = _host_tag()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        parts = name[len(prefix) : -len(".tmp")].split("-")
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue  # another host's, or not named by this version: leave it
        if not _process_alive(int(parts[1])):
            _remove(os.path.join(folder, name))


def _kind(mode):
    """What a file of ``mode`` (``st_mode``) is, in words."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "a special file"


def check_regular_file(path, what="a readable file"):
    """Refuse, before opening it, a ``path`` that is not a regular file (or a
    link to one): opening a FIFO waits for a writer, forever, and a device
    or folder is no file of data.

    Raises
    ------
    FileNotFoundError
        Nothing is at ``path``.
    ValueError
        ``path`` is a folder, FIFO, socket or device; the message says which.
    """
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"No such file: {path}", path) from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not {what}: it is {_kind(mode)}, not a regular file.")


def _resolved(path):
    """``path``, or the regular file it is a symbolic link to: an output
    replaces the content of a linked file and keeps the link, as ``open()``
    would, so the temporary file is made beside the file itself."""
    if os.path.islink(path) and os.path.isfile(path):  # isfile follows links
        return os.path.realpath(path)
    return path


def check_replaceable(path, *, store=None):
    """Refuse, naming what it is, an existing ``path`` that an output may not
    replace: anything but a regular file or a symbolic link to one, except,
    with ``store``, a folder of the kind the output is.

    Parameters
    ----------
    path : str or os.PathLike
    store : (str, callable), optional
        For outputs that are folders: their description ("a zarr store
        written by daskgmm") and the test that recognises one (path -> bool).
        Without it no folder is ever replaced.

    Raises
    ------
    IsADirectoryError
        ``path`` is a directory (or a link to one) that may not be replaced.
    FileExistsError
        ``path`` is a FIFO, socket, device or a dangling symbolic link.
    """
    path = os.fspath(path)
    link = os.path.islink(path)
    try:
        mode = os.stat(path).st_mode  # follows links
    except FileNotFoundError:
        if link:
            raise FileExistsError(f"{path} is a symbolic link to a missing path; refusing to replace it.") from None
        return
    if stat.S_ISREG(mode):
        return
    what = ("a symbolic link to " if link else "") + _kind(mode)
    if stat.S_ISDIR(mode):
        if store is None or link:
            raise IsADirectoryError(f"{path} is {what}, not a file; refusing to replace it.")
        description, recognise = store
        if not recognise(path):
            raise IsADirectoryError(f"{path} is {what}, not {description}; refusing to replace it.")
        return
    raise FileExistsError(f"{path} is {what}, not a file; refusing to replace it.")


def temporary_path(path, *, directory=False):
    """A new empty file (or folder) beside ``path``, named after it, this
    host and this process, for :func:`publish` to move into place."""
    path = _resolved(os.fspath(path))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path)
    prefix = f"{_temporary_prefix(path)}{_host_tag()}-{os.getpid()}-"
    # Made with the modes open() and mkdir() use, which the umask (and a
    # folder's default ACL) then restricts, not tempfile's private 0o600 /
    # 0o700: this entry becomes the output, which the user's group on shared
    # storage may need to read.  No umask is read: it is process-wide.
    for _ in range(100):
        tmp = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}.tmp")
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}", path)


def discard(tmp):
    """Remove a temporary path made by :func:`temporary_path` (if still there)."""
    if tmp is not None and os.path.lexists(tmp):
        _remove(tmp)


def _exists_error(path, hint):
    return FileExistsError(errno.EEXIST, f"{path} already exists; {hint}", path)


def _claim_new(tmp, path, hint):
    """Move ``tmp`` to ``path`` only if ``path`` does not exist, atomically."""
    if os.path.isdir(tmp):
        if os.path.lexists(path):
            raise _exists_error(path, hint)
        try:
            # rename() refuses a non-empty folder or a file as the target; it
            # replaces an empty folder (nothing is lost).
            os.rename(tmp, path)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise _exists_error(path, hint) from None
            raise
        return
    try:
        os.link(tmp, path)  # fails with EEXIST if path exists: no check-then-act race
    except FileExistsError:
        raise _exists_error(path, hint) from None
    except (OSError, AttributeError):
        # No hard links here (some network or FAT file systems): reserve the
        # name with O_EXCL, then replace the empty reservation.
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise _exists_error(path, hint) from None
        os.close(fd)
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def publish(tmp, path, *, overwrite=False, hint="pass overwrite=True to replace it.", store=None):
    """Move the complete temporary ``tmp`` (a file or a folder) to ``path``.

    Without ``overwrite`` an existing ``path`` is never replaced
    (FileExistsError, ``tmp`` left for the caller to discard).  With it, only
    what :func:`check_replaceable` allows (``store``: the folders a folder
    output may replace) is replaced; a symbolic link to a file keeps
    pointing to that file, which gets the new content.  A file replaces a
    file atomically; otherwise the old entry is first renamed aside
    (``.NAME.daskgmm-backup-...``), the new one moved in, and the old one
    removed: a crash between the two renames leaves the old output under the
    backup name, never deleted.
    """
    path = os.fspath(path)
    if not overwrite:
        _claim_new(tmp, path, hint)
        return path
    check_replaceable(path, store=store)
    target = _resolved(path)
    if not os.path.isdir(tmp) and not os.path.isdir(target):
        os.replace(tmp, target)
        return path
    backup = None
    if os.path.lexists(target):
        folder = os.path.dirname(os.path.abspath(target))
        backup = os.path.join(folder, f"{_temporary_prefix(target)}backup-{os.getpid()}-{os.urandom(4).hex()}")
        os.rename(target, backup)
        try:
            # What was renamed aside is removed below: it must still be what
            # was checked, not an entry put there meanwhile.
            check_replaceable(backup, store=store)
        except OSError:
            os.rename(backup, target)
            raise
    try:
        os.rename(tmp, target)
    except BaseException:
        if backup is not None:
            os.rename(backup, target)
        raise
    if backup is not None:
        _remove(backup)
    return path


def same_or_nested(a, b):
    """Whether paths ``a`` and ``b`` name the same entry or one holds the other."""
    real_a, real_b = os.path.realpath(os.fspath(a)), os.path.realpath(os.fspath(b))
    if real_a == real_b:
        return True
    try:
        return os.path.commonpath([real_a, real_b]) in (real_a, real_b)
    except ValueError:  # different drives
        return False


# --------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------


def write_archive(path, arrays, meta, *, overwrite=False):
    """Atomically write ``arrays`` (name -> ndarray) and ``meta`` (JSON dict).

    Raises
    ------
    FileExistsError
        ``path`` exists (or appeared while writing) and ``overwrite`` is
        False, or it is a FIFO, socket, device or dangling link.
    IsADirectoryError
        ``path`` is a directory (or a link to one): never replaced.
    """
    path = os.fspath(path)
    if os.path.lexists(path) and not overwrite:
        raise _exists_error(path, "pass overwrite=True to replace it.")
    check_replaceable(path)
    document = dict(meta, format=FORMAT, format_version=FORMAT_VERSION)
    payload = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    payload[METADATA] = np.array(json.dumps(document))
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **payload)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path, overwrite=overwrite)
    except BaseException:
        discard(tmp)
        raise
    return path


def _unreadable(path, reason):
    return ValueError(f"{path} is not a readable daskgmm file (truncated or corrupt): {reason}")


def _check_members(path, archive):
    """Each ``.npy`` member's header must describe no more bytes than the
    member holds, so a forged shape cannot make NumPy allocate terabytes."""
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            header = member.tell()
        if dtype.hasobject:
            raise _unreadable(path, f"{info.filename} holds Python objects, refused (allow_pickle=False)")
        declared = math.prod(int(n) for n in shape) * dtype.itemsize
        if declared > info.file_size - header:
            raise _unreadable(
                path, f"{info.filename} declares shape {tuple(shape)} ({declared} bytes) but holds {info.file_size - header}"
            )


def _read_members(path, names=None):
    """Arrays and metadata of the archive at ``path`` (``names``: only those)."""
    with zipfile.ZipFile(path) as archive:
        _check_members(path, archive)
    with np.load(path, allow_pickle=False) as archive:
        if METADATA not in archive.files:
            raise ValueError(f"{path} is not a daskgmm file (no daskgmm metadata).")
        document = archive[METADATA]
        if document.ndim != 0 or document.dtype.kind != "U":
            raise ValueError(f"{path} is not a daskgmm file (its metadata is not a text entry).")
        meta = json.loads(str(document[()]))
        wanted = archive.files if names is None else [n for n in names if n in archive.files]
        arrays = {name: archive[name] for name in wanted if name != METADATA}
    return arrays, meta


def read_archive(path, *, metadata_only=False):
    """Read an archive written by :func:`write_archive`.

    Parameters
    ----------
    metadata_only : bool
        Read the JSON document only (``arrays`` is then empty).

    Returns
    -------
    arrays : dict of ndarray
    meta : dict

    Raises
    ------
    FileNotFoundError, ValueError (truncated, corrupt or foreign file)
    """
    path = os.fspath(path)
    check_regular_file(path, "a readable daskgmm file")
    try:
        arrays, meta = _read_members(path, [] if metadata_only else None)
    except ValueError as exc:
        if "daskgmm" in str(exc):
            raise
        raise _unreadable(path, exc) from None
    except Exception as exc:  # noqa: BLE001 - whatever the bytes make a decoder raise, the file is corrupt
        raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a daskgmm file (its metadata is not a JSON object).")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a daskgmm file (format {meta.get('format')!r}).")
    version = meta.get("format_version", 0)
    if not isinstance(version, numbers.Integral) or isinstance(version, bool):
        raise ValueError(f"{path}: metadata 'format_version' is {version!r}, not an integer; the file is corrupt.")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer daskgmm (format version {version}); upgrade daskgmm.")
    return arrays, meta


# --------------------------------------------------------------------------
# Validation (models and checkpoints)
# --------------------------------------------------------------------------


def invalid(where, field, problem, remedy="the file is corrupt or was edited: save the model again."):
    """The ValueError of a field that fails validation."""
    return ValueError(f"{where}: '{field}' {problem}; {remedy}")


def check_integer(where, field, value, *, minimum=None, remedy=None):
    """``value`` as an int, or ValueError naming ``field``."""
    kwargs = {} if remedy is None else {"remedy": remedy}
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise invalid(where, field, f"is {value!r}, not an integer", **kwargs)
    if minimum is not None and value < minimum:
        raise invalid(where, field, f"is {value}, less than {minimum}", **kwargs)
    return int(value)


def check_number(where, field, value, *, allow_nan=False, remedy=None):
    """``value`` as a float (inf allowed), or ValueError naming ``field``."""
    kwargs = {} if remedy is None else {"remedy": remedy}
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise invalid(where, field, f"is {value!r}, not a number", **kwargs)
    if not allow_nan and math.isnan(value):
        raise invalid(where, field, "is NaN", **kwargs)
    return float(value)


def check_array(where, field, array, shape, *, kinds="fiu", remedy=None):
    """``array`` (dtype kind in ``kinds``) as float64 of ``shape``, or
    ValueError naming ``field``."""
    kwargs = {} if remedy is None else {"remedy": remedy}
    if array.dtype.kind not in kinds:
        raise invalid(where, field, f"has dtype {array.dtype}, not real numbers", **kwargs)
    if array.shape != tuple(shape):
        raise invalid(where, field, f"has shape {array.shape}, expected {tuple(shape)}", **kwargs)
    return np.asarray(array, dtype=np.float64)


def check_parameters(
    where, covariance_type, weights, means, covariances, precisions_cholesky, *, dtype=np.float64, fields=None, remedy=None
):
    """ValueError naming the field unless the arrays (of the right shapes) are
    the parameters of a mixture: finite; weights >= 0 summing to 1;
    precisions_cholesky upper triangular (full, tied) with a positive
    diagonal, or positive (diag, spherical); covariances symmetric with a
    positive diagonal and equal to the inverse of ``P P^T``.

    ``dtype`` is the precision the arrays were stored in (they are given as
    float64): covariances and precisions_cholesky were each rounded to it
    after the factor was computed in float64, so their agreement is checked
    to that precision, never tighter."""
    from ._covariance import covariances_from_precisions_cholesky

    names = dict(zip(ARRAY_NAMES, ARRAY_NAMES), **(fields or {}))
    kwargs = {} if remedy is None else {"remedy": remedy}
    eps = float(np.finfo(dtype).eps)
    values = dict(zip(ARRAY_NAMES, (weights, means, covariances, precisions_cholesky)))
    for name, value in values.items():
        if not np.all(np.isfinite(value)):
            raise invalid(where, names[name], "holds NaN or infinite values", **kwargs)
    if np.any(weights < 0):
        raise invalid(where, names["weights"], f"holds negative values ({weights.min():.6g})", **kwargs)
    total = float(weights.sum())
    if abs(total - 1.0) > 1e-6:
        raise invalid(where, names["weights"], f"sums to {total:.10g}, not 1", **kwargs)
    prec, cov = precisions_cholesky, covariances
    if covariance_type in ("full", "tied"):
        prec3, cov3 = (prec[None], cov[None]) if covariance_type == "tied" else (prec, cov)
        diagonals = np.diagonal(prec3, axis1=1, axis2=2)
        if np.any(np.tril(prec3, -1) != 0):
            raise invalid(where, names["precisions_cholesky"], "is not upper triangular", **kwargs)
        if np.any(diagonals <= 0):
            raise invalid(where, names["precisions_cholesky"], "has a non-positive diagonal entry", **kwargs)
        scale = np.sqrt(np.abs(np.einsum("kii->ki", cov3)))
        outer = scale[:, :, None] * scale[:, None, :]
        # Mirrored float64 entries that differ in their last digits may round to
        # neighbours of the stored dtype: a unit in its last place apart.
        if np.any(np.abs(cov3 - np.swapaxes(cov3, 1, 2)) > (1e-8 + 2 * eps) * outer):
            raise invalid(where, names["covariances"], "is not symmetric", **kwargs)
        if np.any(np.einsum("kii->ki", cov3) <= 0):
            raise invalid(where, names["covariances"], "has a non-positive variance on its diagonal", **kwargs)
        # The covariances P^-T P^-1 the factors imply, compared with the stored
        # ones in the scale of the correlations (S^-1 Sigma S^-1, S the standard
        # deviations), where the factor is Q = S P.  Rounding Sigma and P to
        # the stored dtype moves that comparison by at most ~D eps cond(Q);
        # float64's own error in P, computed from Sigma, grows with cond(Q)^2.
        with np.errstate(all="ignore"):
            implied = covariances_from_precisions_cholesky(prec3, "full")
            error = np.max(np.abs(cov3 - implied) / outer, axis=(1, 2))
            condition = np.linalg.cond(scale[:, :, None] * prec3)
            d = cov3.shape[-1]
            tolerance = 1e-6 + 1e4 * np.finfo(np.float64).eps * condition**2 + d * eps * condition
        if not np.all(error <= tolerance):  # NaN (an overflowing inverse) fails too
            raise invalid(
                where, names["covariances"], f"is not the inverse of the precisions (error {np.max(error):.3g})", **kwargs
            )
    else:
        if np.any(prec <= 0):
            raise invalid(where, names["precisions_cholesky"], "has a non-positive value", **kwargs)
        if np.any(cov <= 0):
            raise invalid(where, names["covariances"], "has a non-positive variance", **kwargs)
        error = np.abs(cov * prec**2 - 1.0).max()
        if not error <= 1e-6 + 4 * eps:  # each of cov and prec rounded once
            raise invalid(
                where, names["covariances"], f"is not 1 / precisions_cholesky**2 (error {error:.3g})", **kwargs
            )


# The fields of merged statistics (daskgmm._blocks.Stats) as saved arrays,
# ``<prefix>_<field>``.
STATISTICS_FIELDS = ("n_samples", "log_likelihood", "nk", "means", "scatter")


def statistics_arrays(prefix, stats):
    """The arrays that save ``stats`` (a :class:`daskgmm._blocks.Stats`, or
    one whose fields are stacked over runs), in their own float dtype."""
    return {f"{prefix}_{name}": np.asarray(getattr(stats, name)) for name in STATISTICS_FIELDS}


def check_statistics(where, prefix, arrays, covariance_type, k, d, *, leading=(), positive_count=False, remedy=None):
    """The :class:`daskgmm._blocks.Stats` saved by :func:`statistics_arrays`
    under ``prefix``, each field checked, or ValueError naming it: present,
    float32 or float64 (one dtype for all, kept so that a stream continues
    bitwise), of the shapes of ``k`` components and ``d`` features behind
    ``leading`` axes, finite, ``n_samples`` and ``nk`` >= 0 (``n_samples``
    > 0 with ``positive_count``).  None when no field is saved."""
    from ._blocks import Stats

    kwargs = {} if remedy is None else {"remedy": remedy}
    names = [f"{prefix}_{name}" for name in STATISTICS_FIELDS]
    if not any(name in arrays for name in names):
        return None
    shapes = dict(zip(names, ((), (), (k,), (k, d), _scatter_shape(covariance_type, k, d))))
    values, dtype = {}, None
    for name in names:
        if name not in arrays:
            raise invalid(where, name, "is missing", **kwargs)
        value = arrays[name]
        shape = tuple(leading) + shapes[name]
        if value.dtype.kind != "f" or value.dtype.itemsize not in (4, 8):
            raise invalid(where, name, f"has dtype {value.dtype}, not float32 or float64", **kwargs)
        if dtype is not None and value.dtype != dtype:
            raise invalid(where, name, f"has dtype {value.dtype}, not {dtype} as '{names[0]}'", **kwargs)
        dtype = value.dtype
        if value.shape != shape:
            # The archive keeps a single (0-d) number as shape (1,).
            if shape == () and value.shape == (1,):
                value = value.reshape(())
            else:
                raise invalid(where, name, f"has shape {value.shape}, expected {shape}", **kwargs)
        if not np.all(np.isfinite(value)):
            raise invalid(where, name, "holds NaN or infinite values", **kwargs)
        values[name] = value
    n_samples, nk = values[names[0]], values[names[2]]
    if np.any(n_samples < 0) or (positive_count and np.any(n_samples <= 0)):
        raise invalid(where, names[0], f"is {n_samples.tolist()}, not {'positive' if positive_count else '>= 0'}", **kwargs)
    if np.any(nk < 0):
        raise invalid(where, names[2], f"holds negative values ({nk.min():.6g})", **kwargs)
    if not leading:  # numbers, as the merges and scalings of a pass give them
        values = {name: value[()] if value.ndim == 0 else value for name, value in values.items()}
    return Stats(covariance_type, *(values[name] for name in names))


def _scatter_shape(covariance_type, k, d):
    """Shape of the centred scatter of :class:`daskgmm._blocks.Stats`."""
    return {"full": (k, d, d), "tied": (d, d)}.get(covariance_type, (k, d))


# The fields of one iteration's record (``history_``; a run's ``records``).
RECORD_FIELDS = ("iteration", "lower_bound", "change", "seconds", "n_chunks")


def records_array(records):
    """Iteration records (dicts of :data:`RECORD_FIELDS`) as rows of a
    float64 array, (n_records, 5)."""
    rows = [[record[name] for name in RECORD_FIELDS] for record in records]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(RECORD_FIELDS))


def records_from_array(rows):
    """The iteration records of :func:`records_array`'s rows."""
    return [
        dict(zip(RECORD_FIELDS, (int(row[0]), float(row[1]), float(row[2]), float(row[3]), int(row[4]))))
        for row in rows
    ]


def check_records(where, field, rows, *, remedy=None):
    """ValueError naming ``field`` unless ``rows`` are iteration records: no
    NaN, the counts non-negative integers and the seconds finite and
    non-negative, as the records' dicts (int, float) need; a bound or its
    change may be infinite (the first change is)."""
    kwargs = {} if remedy is None else {"remedy": remedy}
    if np.any(np.isnan(rows)):
        raise invalid(where, field, "holds NaN", **kwargs)
    for name in ("iteration", "n_chunks", "seconds"):
        values = rows[:, RECORD_FIELDS.index(name)]
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise invalid(where, field, f"holds {name} values that are infinite or negative", **kwargs)
        if name != "seconds" and np.any(values != np.round(values)):
            raise invalid(where, field, f"holds {name} values that are not integers", **kwargs)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def _json_params(model):
    """Constructor settings that JSON can hold exactly; the others (a
    RandomState, say) are recorded as text under ``params_repr`` only, so that
    loading never turns a description back into a wrong parameter value."""
    params, described = {}, {}
    for name, value in model.get_params().items():
        if isinstance(value, np.ndarray):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            described[name] = repr(value)
            continue
        params[name] = value
    return params, described


# The float dtypes a model's parameters can have (a fit's data dtype).
PARAMETER_DTYPES = ("float32", "float64")


def _parameter_dtype(model):
    """The float dtype of a fitted estimator's parameters (float32 after a
    fit on float32 data), in which they are saved and loaded."""
    dtype = np.result_type(*(np.asarray(getattr(model, name + "_")) for name in ARRAY_NAMES))
    return dtype if dtype.name in PARAMETER_DTYPES else np.dtype(np.float64)


def model_meta(model, kind="model"):
    """The metadata document of a fitted estimator."""
    from . import __version__

    params, described = _json_params(model)
    return {
        "kind": kind,
        "daskgmm_version": __version__,
        "covariance_type": model.covariance_type,
        "n_components": int(model.n_components),
        "n_features": int(model.n_features_in_),
        "dtype": _parameter_dtype(model).name,
        "params": params,
        "params_repr": described,
        "fit": {
            "converged": bool(model.converged_),
            "n_iter": int(model.n_iter_),
            "lower_bound": float(model.lower_bound_),
            "lower_bounds": [float(v) for v in getattr(model, "lower_bounds_", [])],
            "n_features_in": int(model.n_features_in_),
            # Column names of a DataFrame, or the feature coordinate of labelled
            # data (daskgmm.xarray): checked again at predict.
            "feature_names_in": (
                [str(name) for name in model.feature_names_in_] if hasattr(model, "feature_names_in_") else None
            ),
        },
    }


# What a saved BayesianGaussianMixture holds besides ARRAY_NAMES: its
# posterior (``posterior_<name>``) and the priors it was fitted with.
BAYESIAN_PRIOR_ARRAYS = ("mean_prior", "covariance_prior")
BAYESIAN_PRIOR_NUMBERS = ("weight_concentration_prior", "mean_precision_prior", "degrees_of_freedom_prior")


def save_model(model, path, *, overwrite=False, extra=None):
    """Save a fitted :class:`daskgmm.GaussianMixture` or
    :class:`daskgmm.BayesianGaussianMixture` to ``path``.

    ``extra`` (a JSON-serialisable dict) is merged into the metadata
    document, e.g. the command line records the input's layout there.
    """
    model._check_is_fitted(in_use=False)  # the file keeps an unfinished pass: no warning
    dtype = _parameter_dtype(model)
    arrays = {name: np.asarray(getattr(model, name + "_"), dtype=dtype) for name in ARRAY_NAMES}
    meta = model_meta(model)
    if type(model).__name__ == "BayesianGaussianMixture":
        meta["estimator"] = "BayesianGaussianMixture"
        for name, value in model._run_from_attributes().posterior.items():
            arrays[f"posterior_{name}"] = np.asarray(value, dtype=np.float64)
        for name in BAYESIAN_PRIOR_ARRAYS:
            arrays[name] = np.asarray(getattr(model, name + "_"), dtype=np.float64)
        meta["priors"] = {name: float(getattr(model, name + "_")) for name in BAYESIAN_PRIOR_NUMBERS}
    stream_arrays, meta["stream"] = _stream_fields(model)
    arrays.update(stream_arrays)
    if hasattr(model, "history_"):
        arrays["fit_history"] = records_array(model.history_)
    if extra:
        reserved = sorted(set(extra) & (set(meta) | {"format", "format_version"}))
        if reserved:
            raise ValueError(f"extra metadata cannot replace the reserved entries {reserved}.")
        meta.update(extra)
    return write_archive(path, arrays, meta, overwrite=overwrite)


def _stream_fields(model):
    """Arrays and metadata entry (None without a stream) of what continues
    the model's stream of ``partial_fit``: the statistics of its fit's last
    pass (``fit_statistics_*``), and the state of ``partial_fit`` (the
    ``stream`` entry: mode, counts; ``stream_statistics_*``: the running
    statistics, or those of the unfinished exact pass)."""
    arrays = {}
    fit_statistics = getattr(model, "_fit_statistics", None)
    if fit_statistics is not None:
        arrays.update(statistics_arrays("fit_statistics", fit_statistics))
    state = getattr(model, "_online_state", None)
    if state is None:
        return arrays, None
    if state.statistics is not None:
        arrays.update(statistics_arrays("stream_statistics", state.statistics))
    return arrays, {
        "mode": state.mode,
        "n_batch_iter": int(state.n_batch_iter),
        "n_samples_seen": float(state.n_samples_seen),
        "batch_offset": int(state.batch_offset),
        "n_chunks": int(state.n_chunks),
        "weight_scale": float(state.weight_scale),
    }


def _load_stream(path, model, arrays, meta, k, d):
    """The fit's statistics and the stream state of :func:`_stream_fields`,
    each field checked; a file without them (older ones) gives a model
    without (a stream then starts afresh)."""
    from ._engine.online import ONLINE_MODES, OnlineState

    kind = model.covariance_type
    model._fit_statistics = check_statistics(path, "fit_statistics", arrays, kind, k, d, positive_count=True)
    statistics = check_statistics(path, "stream_statistics", arrays, kind, k, d)
    stream = meta.get("stream")
    if stream is None:
        if statistics is not None:
            raise invalid(path, "stream", "is missing, but the file holds stream_statistics")
        return
    if not isinstance(stream, dict):
        raise invalid(path, "stream", f"is {type(stream).__name__}, not a JSON object")
    mode = stream.get("mode")
    if not isinstance(mode, str) or mode not in ONLINE_MODES:
        raise invalid(path, "stream.mode", f"is {mode!r}, not one of {list(ONLINE_MODES)}")
    n_batch_iter = check_integer(path, "stream.n_batch_iter", stream.get("n_batch_iter"), minimum=0)
    batch_offset = check_integer(path, "stream.batch_offset", stream.get("batch_offset"), minimum=0)
    n_chunks = check_integer(path, "stream.n_chunks", stream.get("n_chunks"), minimum=0)
    weight_scale = check_number(path, "stream.weight_scale", stream.get("weight_scale", 1.0))
    if not (math.isfinite(weight_scale) and weight_scale > 0 and math.frexp(weight_scale)[0] == 0.5):
        raise invalid(path, "stream.weight_scale", f"is {weight_scale!r}, not a positive power of two")
    n_samples_seen = check_number(path, "stream.n_samples_seen", stream.get("n_samples_seen"))
    if not (math.isfinite(n_samples_seen) and n_samples_seen >= 0):
        raise invalid(path, "stream.n_samples_seen", f"is {n_samples_seen!r}, not a finite number >= 0")
    model._keep_online_state(
        OnlineState(
            mode, statistics=statistics, n_batch_iter=n_batch_iter, n_samples_seen=n_samples_seen,
            n_chunks=n_chunks, batch_offset=batch_offset, weight_scale=weight_scale,
        )
    )


def _model_params(path, meta, covariance_type, n_components):
    """Constructor settings from ``meta['params']``, checked by the estimator."""
    from .bayesian_mixture import BayesianGaussianMixture
    from .mixture import GaussianMixture

    estimator = meta.get("estimator", "GaussianMixture")
    classes = {"GaussianMixture": GaussianMixture, "BayesianGaussianMixture": BayesianGaussianMixture}
    if estimator not in classes:
        raise invalid(path, "estimator", f"is {estimator!r}, not one of {sorted(classes)}")
    cls = classes[estimator]
    params = meta.get("params", {})
    if not isinstance(params, dict):
        raise invalid(path, "params", f"is {type(params).__name__}, not a JSON object")
    valid = set(cls().get_params(deep=False))
    params = {key: value for key, value in params.items() if key in valid}
    for key in ("weights_init", "means_init", "precisions_init", "mean_prior", "covariance_prior"):
        params.pop(key, None)  # arrays: described, not restored (the fitted priors are)
    for key, value in (("covariance_type", covariance_type), ("n_components", n_components)):
        if key in params and params[key] != value:
            raise invalid(path, f"params.{key}", f"is {params[key]!r} but the file's {key} is {value!r}")
    params.update(covariance_type=covariance_type, n_components=n_components)
    model = cls(**params)
    try:
        model._validate_params()
    except (TypeError, ValueError) as exc:
        raise invalid(path, "params", f"holds an invalid setting ({' '.join(str(exc).split())})") from None
    return model


def load(path: str | os.PathLike[str]) -> GaussianMixture | BayesianGaussianMixture:
    """Load a model saved with :meth:`GaussianMixture.save`; runs no code from the file.

    Every field is checked (see :mod:`daskgmm.io`); the arrays come back in
    the dtype they were saved in, bit for bit.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :meth:`daskgmm.GaussianMixture.save` or
        :meth:`daskgmm.BayesianGaussianMixture.save` (or the command line's
        ``daskgmm fit``).

    Returns
    -------
    GaussianMixture or BayesianGaussianMixture
        The fitted model, with the settings it was saved with (those JSON
        cannot hold, a RandomState or an array such as ``means_init``, take
        their defaults) and, when the file holds one, its stream of
        :meth:`~daskgmm.GaussianMixture.partial_fit` where it was.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a daskgmm model, or a field of it is missing or
        invalid (the message names the field).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import daskgmm
    >>> X = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    >>> gmm = daskgmm.GaussianMixture(2, random_state=0).fit(X)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = gmm.save(os.path.join(folder, "model.npz"))
    ...     model = daskgmm.load(path)
    >>> type(model).__name__, model.n_components
    ('GaussianMixture', 2)
    >>> print(model.predict(X))
    [1 1 1 0 0 0]
    """
    from ._blocks import COVARIANCE_TYPES
    from ._covariance import covariance_shape, precisions_from_cholesky

    arrays, meta = read_archive(path)
    kind = meta.get("kind", "model")
    if kind == "checkpoint":
        raise ValueError(
            f"{path} is a daskgmm checkpoint, not a saved model: resume it with fit(X, checkpoint=PATH) "
            "(or daskgmm fit --checkpoint) and save the fitted model."
        )
    if kind != "model":
        raise invalid(path, "kind", f"is {kind!r}, not 'model'")
    missing = [name for name in ARRAY_NAMES if name not in arrays]
    if missing:
        raise ValueError(f"{path} is not a complete daskgmm model: missing {', '.join(missing)}.")
    for name in ("covariance_type", "n_components", "n_features", "dtype"):
        if name not in meta:
            raise ValueError(f"{path} is not a complete daskgmm model: bad or missing metadata ('{name}' is missing).")
    covariance_type = meta["covariance_type"]
    if not isinstance(covariance_type, str) or covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"{path}: unknown covariance_type {covariance_type!r} in the metadata.")
    k = check_integer(path, "n_components", meta["n_components"], minimum=1)
    d = check_integer(path, "n_features", meta["n_features"], minimum=1)
    expected = {
        "weights": (k,),
        "means": (k, d),
        "covariances": covariance_shape(covariance_type, k, d),
        "precisions_cholesky": covariance_shape(covariance_type, k, d),
    }
    dtype = meta["dtype"]
    if not isinstance(dtype, str) or dtype not in PARAMETER_DTYPES:
        raise invalid(path, "dtype", f"is {dtype!r}, not one of {list(PARAMETER_DTYPES)}")
    dtype = np.dtype(dtype)
    values = {}
    for name, shape in expected.items():
        values[name] = check_array(path, name, arrays[name], shape)
        stored = arrays[name].dtype
        if stored.kind != "f" or stored.itemsize != dtype.itemsize:
            raise invalid(path, name, f"has dtype {stored}, but the file's dtype is {dtype.name!r}")
    check_parameters(path, covariance_type, *(values[name] for name in ARRAY_NAMES), dtype=dtype)
    fit = meta.get("fit")
    if not isinstance(fit, dict):
        raise invalid(path, "fit", "is missing" if fit is None else f"is {type(fit).__name__}, not a JSON object")
    for name in ("converged", "n_iter", "lower_bound", "lower_bounds", "n_features_in"):
        if name not in fit:
            raise invalid(path, f"fit.{name}", "is missing")
    converged = fit["converged"]
    if not isinstance(converged, bool):
        raise invalid(path, "fit.converged", f"is {converged!r}, not true or false")
    n_iter = check_integer(path, "fit.n_iter", fit["n_iter"], minimum=0)
    lower_bound = check_number(path, "fit.lower_bound", fit["lower_bound"], allow_nan=True)
    lower_bounds = fit["lower_bounds"]
    if not isinstance(lower_bounds, list):
        raise invalid(path, "fit.lower_bounds", f"is {type(lower_bounds).__name__}, not a list")
    lower_bounds = [check_number(path, "fit.lower_bounds", value) for value in lower_bounds]
    n_features_in = check_integer(path, "fit.n_features_in", fit["n_features_in"], minimum=1)
    if n_features_in != d:
        raise invalid(path, "fit.n_features_in", f"is {n_features_in} but the file's n_features is {d}")
    feature_names = fit.get("feature_names_in")
    if feature_names is not None and (
        not isinstance(feature_names, list)
        or len(feature_names) != d
        or not all(isinstance(name, str) for name in feature_names)
    ):
        raise invalid(path, "fit.feature_names_in", f"is {feature_names!r}, not a list of {d} strings")
    model = _model_params(path, meta, covariance_type, k)
    if feature_names is not None:
        model.feature_names_in_ = np.asarray(feature_names, dtype=object)
    # In the saved dtype: the arrays of the model that was saved, bit for bit.
    model.weights_, model.means_, model.covariances_, model.precisions_cholesky_ = (
        np.asarray(arrays[name], dtype=dtype) for name in ARRAY_NAMES
    )
    model.precisions_ = precisions_from_cholesky(model.precisions_cholesky_, covariance_type)
    model.converged_ = converged
    model.n_iter_ = n_iter
    model.lower_bound_ = lower_bound
    model.lower_bounds_ = lower_bounds
    if "fit_history" in arrays:  # files written before it was kept have none
        stored = arrays["fit_history"]
        rows = check_array(path, "fit_history", stored, (stored.shape[0] if stored.ndim else 0, len(RECORD_FIELDS)))
        check_records(path, "fit_history", rows)
        model.history_ = records_from_array(rows)
    model.n_features_in_ = n_features_in
    if meta.get("estimator") == "BayesianGaussianMixture":
        _load_posterior(path, model, arrays, meta, k, d)
    _load_stream(path, model, arrays, meta, k, d)
    return model


def _scalar_if_one(array, shape):
    """A single stored value as the scalar ``shape == ()`` asks for (the
    archive keeps 0-d arrays as (1,))."""
    return array.reshape(()) if shape == () and array.size == 1 else array


def _load_posterior(path, model, arrays, meta, k, d):
    """The posterior and priors of a saved BayesianGaussianMixture, each
    field checked (shape, finite, positive where it must be)."""
    from ._families import Run

    kind = model.covariance_type
    process = model.weight_concentration_prior_type == "dirichlet_process"
    shapes = {
        "weight_concentration": (2, k) if process else (k,),
        "mean_precision": (k,),
        "degrees_of_freedom": () if kind == "tied" else (k,),
    }
    posterior = {}
    for name, shape in shapes.items():
        field = f"posterior_{name}"
        if field not in arrays:
            raise ValueError(f"{path} is not a complete BayesianGaussianMixture: missing {field}.")
        value = check_array(path, field, _scalar_if_one(arrays[field], shape), shape)
        if not np.all(np.isfinite(value)):
            raise invalid(path, field, "holds NaN or infinite values")
        if not np.all(value > 0):
            raise invalid(path, field, "holds values that are not positive")
        posterior[name] = value
    if np.any(posterior["degrees_of_freedom"] <= d - 1):
        raise invalid(path, "posterior_degrees_of_freedom", f"holds values not above n_features - 1 = {d - 1}")
    priors = meta.get("priors")
    if not isinstance(priors, dict):
        raise invalid(path, "priors", f"is {type(priors).__name__}, not a JSON object")
    for name in BAYESIAN_PRIOR_NUMBERS:
        value = check_number(path, f"priors.{name}", priors.get(name))
        if not (0 < value < math.inf):
            raise invalid(path, f"priors.{name}", f"is {value!r}, not a positive finite number")
        setattr(model, name + "_", value)
    if not model.degrees_of_freedom_prior_ > d - 1:
        raise invalid(
            path, "priors.degrees_of_freedom_prior",
            f"is {model.degrees_of_freedom_prior_!r}, not above n_features - 1 = {d - 1}",
        )
    prior_shapes = {"mean_prior": (d,), "covariance_prior": {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[kind]}
    for name, shape in prior_shapes.items():
        if name not in arrays:
            raise ValueError(f"{path} is not a complete BayesianGaussianMixture: missing {name}.")
        value = check_array(path, name, _scalar_if_one(arrays[name], shape), shape)
        if not np.all(np.isfinite(value)):
            raise invalid(path, name, "holds NaN or infinite values")
        setattr(model, name + "_", value)
    _check_covariance_prior(path, kind, model.covariance_prior_)
    if kind == "spherical":
        model.covariance_prior_ = float(model.covariance_prior_)
    run = Run(kind, model.weights_, model.means_, model.covariances_, model.precisions_cholesky_, posterior=posterior)
    model._set_posterior(run)
    # The weights are the posterior's mean, computed in float64 and rounded
    # to the saved dtype: they agree to that dtype's precision.
    expected = model._family().expected_weights(posterior["weight_concentration"])
    rtol = max(1e-9, 4 * float(np.finfo(model.weights_.dtype).eps))
    if not np.allclose(expected, model.weights_, rtol=rtol, atol=1e-12):
        raise invalid(path, "weights", "disagree with posterior_weight_concentration")


def _check_covariance_prior(path, kind, prior):
    """The prior's variances are not negative, and a full or tied prior is a
    symmetric positive semi-definite matrix up to rounding (one computed from
    data with a constant feature has a zero variance: still a valid file)."""
    if kind in ("diag", "spherical"):
        if np.any(prior < 0):
            raise invalid(path, "covariance_prior", "holds negative variances")
        return
    if np.any(np.diag(prior) < 0):
        raise invalid(path, "covariance_prior", "has a negative variance on its diagonal")
    if not np.allclose(prior, prior.T):  # the estimator's test of a given prior
        raise invalid(path, "covariance_prior", "is not symmetric")
    eigenvalues = np.linalg.eigvalsh(prior)
    if eigenvalues[0] < -1e-8 * max(eigenvalues[-1], 0.0):
        raise invalid(path, "covariance_prior", f"is not positive semi-definite (eigenvalue {eigenvalues[0]:.3g})")
