"""The archive layer: atomic files, npz + JSON documents, and the checks of
their fields.  Saved models (:mod:`daskgmm.io`) and checkpoints
(:mod:`daskgmm._checkpoint`) are written and read through it; it knows
nothing of the estimators.

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

An archive is a NumPy ``.npz`` file read with ``allow_pickle=False``, so
reading can never run code: one ``.npy`` member per array and the JSON
document under ``__daskgmm__`` (see :mod:`daskgmm.io` for the fields of a
model).
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

import numpy as np

from ._blocks import Stats
from ._covariance import covariance_model

FORMAT = "daskgmm-model"
FORMAT_VERSION = 1
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
    where, covariance_type, weights, means, covariances, precisions_cholesky, *, dtype=np.float64, fields=None, remedy=None,
    weights_total=1.0,
):
    """ValueError naming the field unless the arrays (of the right shapes) are
    the parameters of a mixture: finite; weights >= 0 summing to 1
    (``weights_total``: 1 less a noise component's weight);
    precisions_cholesky upper triangular (full, tied) with a positive
    diagonal, or positive (diag, spherical); covariances symmetric with a
    positive diagonal and equal to the inverse of ``P P^T``.

    ``dtype`` is the precision the arrays were stored in (they are given as
    float64): covariances and precisions_cholesky were each rounded to it
    after the factor was computed in float64, so their agreement is checked
    to that precision, never tighter."""
    values = {"weights": weights, "means": means, "covariances": covariances, "precisions_cholesky": precisions_cholesky}
    names = {name: (fields or {}).get(name, name) for name in values}
    kwargs = {} if remedy is None else {"remedy": remedy}
    eps = float(np.finfo(dtype).eps)
    for name, value in values.items():
        if not np.all(np.isfinite(value)):
            raise invalid(where, names[name], "holds NaN or infinite values", **kwargs)
    if np.any(weights < 0):
        raise invalid(where, names["weights"], f"holds negative values ({weights.min():.6g})", **kwargs)
    total = float(weights.sum())
    if abs(total - weights_total) > 1e-6:
        expected = "1" if weights_total == 1.0 else f"{weights_total:.10g} (1 less the noise weight)"
        raise invalid(where, names["weights"], f"sums to {total:.10g}, not {expected}", **kwargs)

    def fail(name, message):
        raise invalid(where, names[name], message, **kwargs)

    covariance_model(covariance_type).check_saved(covariances, precisions_cholesky, eps, fail)


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
    kwargs = {} if remedy is None else {"remedy": remedy}
    names = [f"{prefix}_{name}" for name in STATISTICS_FIELDS]
    if not any(name in arrays for name in names):
        return None
    model = covariance_model(covariance_type)
    shapes = dict(zip(names, ((), (), (k,), (k, d), model.scatter_shape(k, d))))
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
    return Stats(model.block_kind, *(values[name] for name in names))


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
