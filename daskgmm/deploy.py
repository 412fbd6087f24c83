"""Helpers to run daskgmm on HPC job queues or on an existing scheduler.

Three deployment paths are supported (see ``deploy/README.md``):

* SLURM or PBS through `dask-jobqueue <https://jobqueue.dask.org>`_:
  :func:`load_jobqueue_config` reads a dask-jobqueue YAML file (the format of
  ``deploy/jobqueue.yaml``, shipped as :data:`DEFAULT_CONFIG`) and
  :func:`make_cluster` turns one of its sections into a ``SLURMCluster`` or
  ``PBSCluster``; ``python -m daskgmm.deploy`` (:func:`main`) fits on such a
  cluster from the command line;
* an already running ``dask scheduler``, optionally secured with TLS:
  :func:`load_tls_config` / :func:`make_security` read the TLS file names from
  a YAML file in distributed's configuration format (the format of
  ``deploy/scheduler-tls.yaml``) and :func:`connect` returns a
  :class:`distributed.Client`.

``dask-jobqueue`` is an optional dependency (``pip install
daskgmm[jobqueue]``); it is imported only when a cluster is made.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "SUPPORTED_SYSTEMS",
    "load_jobqueue_config",
    "jobqueue_kwargs",
    "make_cluster",
    "load_tls_config",
    "make_security",
    "connect",
]

#: Job-queue systems for which :func:`make_cluster` can build a cluster,
#: mapped to the ``dask_jobqueue`` class name.
SUPPORTED_SYSTEMS = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}

# Keys accepted in a ``jobqueue.<system>`` section; these are the keys of
# dask-jobqueue 0.9's own ``jobqueue.yaml`` for the system.
_COMMON_KEYS = frozenset(
    {
        "name",
        "cores",
        "memory",
        "processes",
        "python",
        "interface",
        "death-timeout",
        "local-directory",
        "shared-temp-directory",
        "extra",
        "worker-command",
        "worker-extra-args",
        "shebang",
        "queue",
        "account",
        "project",
        "walltime",
        "env-extra",
        "job-script-prologue",
        "job-extra",
        "job-extra-directives",
        "job-directives-skip",
        "log-directory",
        "scheduler-options",
    }
)
_ALLOWED_KEYS = {
    "slurm": _COMMON_KEYS | {"job-cpu", "job-mem"},
    "pbs": _COMMON_KEYS | {"resource-spec"},
}
_LIST_KEYS = (
    "worker-extra-args",
    "job-script-prologue",
    "job-extra-directives",
    "job-directives-skip",
)
# Keys that are constructor arguments of the cluster but not of the same
# name: the job name is ``job_name`` (``name`` names the cluster object).
_KWARG_NAMES = {"name": "job_name"}

_INSTALL_HINT = (
    "dask-jobqueue is required to start a SLURM or PBS cluster; install it "
    "with: pip install daskgmm[jobqueue]"
)


def _check_system(system: str) -> str:
    if not isinstance(system, str) or system.lower() not in SUPPORTED_SYSTEMS:
        raise ValueError(
            f"unsupported job-queue system {system!r}; expected one of "
            f"{sorted(SUPPORTED_SYSTEMS)}"
        )
    return system.lower()


def _read_yaml(path: str | os.PathLike) -> Any:
    import yaml

    path = Path(os.path.expandvars(os.fspath(path))).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"configuration file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc


def _validate_section(section: Any, system: str, where: str) -> dict:
    """Check one ``jobqueue.<system>`` section; return a plain dict copy."""
    from dask.utils import parse_bytes

    prefix = f"{where}: jobqueue.{system}"
    if not isinstance(section, Mapping):
        raise ValueError(
            f"{prefix} must be a mapping of dask-jobqueue options, "
            f"got {type(section).__name__}"
        )
    section = dict(section)

    unknown = sorted(set(section) - _ALLOWED_KEYS[system])
    if unknown:
        raise ValueError(
            f"{prefix} has unknown key(s) {unknown}; valid keys are "
            f"{sorted(_ALLOWED_KEYS[system])}"
        )

    for key in ("cores", "memory"):
        if section.get(key) is None:
            raise ValueError(
                f"{prefix}.{key} is required (dask-jobqueue cannot size a job "
                f"without both 'cores' and 'memory')"
            )

    cores = section["cores"]
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"{prefix}.cores must be a positive integer, got {cores!r}")

    processes = section.get("processes")
    if processes is not None:
        if (
            isinstance(processes, bool)
            or not isinstance(processes, int)
            or processes < 1
        ):
            raise ValueError(
                f"{prefix}.processes must be a positive integer, got {processes!r}"
            )
        if cores % processes:
            raise ValueError(
                f"{prefix}.cores ({cores}) must be a multiple of "
                f"{prefix}.processes ({processes}); each worker process gets "
                f"cores // processes threads"
            )

    try:
        parse_bytes(str(section["memory"]))
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{prefix}.memory must be a size such as '32GiB', got "
            f"{section['memory']!r}"
        ) from exc

    walltime = section.get("walltime")
    if walltime is not None and not isinstance(walltime, str):
        # YAML 1.1 reads an unquoted 1:00:00 as the integer 3600.
        raise ValueError(
            f"{prefix}.walltime must be a quoted string such as '01:00:00', "
            f"got {walltime!r} (YAML reads an unquoted H:MM:SS as a number of seconds)"
        )

    for key in _LIST_KEYS:
        value = section.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise ValueError(f"{prefix}.{key} must be a list of strings, got {value!r}")

    options = section.get("scheduler-options")
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(
            f"{prefix}.scheduler-options must be a mapping, got {options!r}"
        )
    return section


def load_jobqueue_config(path: str | os.PathLike, system: str = "slurm") -> dict:
    """Read and validate the section of a dask-jobqueue YAML file.

    Parameters
    ----------
    path : str or os.PathLike
        YAML file in dask-jobqueue's format, i.e. with a top-level
        ``jobqueue`` mapping holding one section per system (``slurm``,
        ``pbs``, ...), such as ``deploy/jobqueue.yaml``. ``~`` and environment
        variables in the path are expanded.
    system : {'slurm', 'pbs'}, default 'slurm'
        Which section to return.

    Returns
    -------
    dict
        The ``jobqueue.<system>`` section, with dask-jobqueue's kebab-case
        keys (``death-timeout``, ``worker-extra-args``, ...).

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file is not valid YAML, has no ``jobqueue`` mapping or no
        ``jobqueue.<system>`` section, if `system` is not supported, or if the
        section has unknown keys, lacks ``cores`` or ``memory``, has
        ``cores`` that is not a multiple of ``processes``, an unparsable
        ``memory``, an unquoted ``walltime`` or wrongly typed list options.

    Examples
    --------
    >>> section = load_jobqueue_config("deploy/jobqueue.yaml", "pbs")  # doctest: +SKIP
    >>> section["cores"]  # doctest: +SKIP
    8
    """
    system = _check_system(system)
    data = _read_yaml(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("jobqueue"), Mapping):
        raise ValueError(
            f"{path}: expected a top-level 'jobqueue' mapping "
            f"(jobqueue: {{{system}: {{cores: ..., memory: ...}}}})"
        )
    sections = data["jobqueue"]
    if system not in sections:
        raise ValueError(
            f"{path}: no 'jobqueue.{system}' section; the file has sections "
            f"{sorted(sections)}"
        )
    return _validate_section(sections[system], system, str(path))


def jobqueue_kwargs(section: Mapping, **overrides: Any) -> dict:
    """Turn a ``jobqueue.<system>`` section into cluster keyword arguments.

    Parameters
    ----------
    section : Mapping
        A validated section, as returned by :func:`load_jobqueue_config`.
    **overrides
        Keyword arguments of ``SLURMCluster``/``PBSCluster`` that take
        precedence over the section (``-`` in names is accepted too).
        ``scheduler_options`` is merged into the section's
        ``scheduler-options`` rather than replacing it.

    Returns
    -------
    dict
        Keyword arguments for the dask-jobqueue cluster class. Keys whose
        value is ``None`` are left out, so dask-jobqueue falls back to the
        dask configuration for them.
    """
    kwargs = {}
    for key, value in section.items():
        if value is None:
            continue
        kwargs[_KWARG_NAMES.get(key, key.replace("-", "_"))] = value
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key == "scheduler_options" and value is not None:
            value = {**kwargs.get("scheduler_options", {}), **value}
        kwargs[key] = value
    return kwargs


def make_cluster(
    system: str, config_path: str | os.PathLike | None = None, **overrides: Any
):
    """Create a dask-jobqueue cluster for SLURM or PBS from a YAML config.

    The cluster starts a scheduler in this process but submits no job until
    it is scaled (``cluster.scale(jobs=N)``) or made adaptive.
    ``cluster.job_script()`` shows the batch script a job would run.

    Parameters
    ----------
    system : {'slurm', 'pbs'}
        Job-queue system; picks ``dask_jobqueue.SLURMCluster`` or
        ``dask_jobqueue.PBSCluster`` and the config section.
    config_path : str or os.PathLike, optional
        dask-jobqueue YAML file such as ``deploy/jobqueue.yaml``. Every key of
        its ``jobqueue.<system>`` section is passed to the cluster explicitly.
        If None, the ``jobqueue.<system>`` section of the dask configuration
        already loaded (``~/.config/dask/jobqueue.yaml``, ``DASK_JOBQUEUE__*``
        environment variables) is validated and used.
    **overrides
        Keyword arguments of the cluster class that take precedence over the
        file, e.g. ``queue="short"``, ``walltime="00:20:00"``, ``cores=16``,
        ``scheduler_options={"host": "10.0.0.1"}`` (merged into the file's
        ``scheduler-options``) or ``security=Security(...)``.

    Returns
    -------
    dask_jobqueue.SLURMCluster or dask_jobqueue.PBSCluster
        The cluster; close it (or use it as a context manager) when done.

    Raises
    ------
    ImportError
        If dask-jobqueue is not installed.
    ValueError
        If `system` is unsupported or the configuration is invalid (see
        :func:`load_jobqueue_config`).

    Examples
    --------
    >>> with make_cluster("slurm", "deploy/jobqueue.yaml",
    ...                   queue="short") as cluster:  # doctest: +SKIP
    ...     print(cluster.job_script())
    """
    system = _check_system(system)
    if config_path is not None:
        section = load_jobqueue_config(config_path, system)
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    if config_path is None:
        # Read after importing dask_jobqueue, which registers its defaults.
        import dask

        section = dask.config.get(f"jobqueue.{system}", default=None)
        if section is None:
            raise ValueError(f"the dask configuration has no 'jobqueue.{system}' section")
        section = _validate_section(section, system, "dask configuration")
    cluster_cls = getattr(dask_jobqueue, SUPPORTED_SYSTEMS[system])
    return cluster_cls(**jobqueue_kwargs(section, **overrides))


# --------------------------------------------------------------------------
# Existing scheduler, with TLS
# --------------------------------------------------------------------------

_TLS_VERSIONS = {1.2: "TLSv1_2", 1.3: "TLSv1_3"}


def load_tls_config(path: str | os.PathLike, role: str = "client") -> dict:
    """Read TLS settings for one role from a distributed-format YAML file.

    The file uses distributed's own configuration keys (so it can also be
    dropped into ``~/.config/dask/``)::

        distributed:
          comm:
            require-encryption: true
            tls:
              ca-file: /path/to/ca.pem
              client:
                cert: /path/to/client.pem
                key: /path/to/client.key

    Parameters
    ----------
    path : str or os.PathLike
        YAML file such as ``deploy/scheduler-tls.yaml``.
    role : {'client', 'scheduler', 'worker'}, default 'client'
        Whose certificate and key to read.

    Returns
    -------
    dict
        Keyword arguments for :class:`distributed.security.Security`:
        ``require_encryption``, ``tls_ca_file``, ``tls_<role>_cert``, and
        ``tls_<role>_key`` / ``tls_ciphers`` / ``tls_min_version`` /
        ``tls_max_version`` when set. File paths are expanded (``~``,
        environment variables) and, if relative, taken relative to the
        YAML file's folder.

    Raises
    ------
    FileNotFoundError
        If the YAML file or a certificate/key file it names does not exist.
    ValueError
        If the file lacks ``distributed.comm.tls``, ``ca-file`` or the
        role's ``cert``, or gives an unsupported TLS version.
    """
    if role not in ("client", "scheduler", "worker"):
        raise ValueError(f"role must be 'client', 'scheduler' or 'worker', got {role!r}")
    data = _read_yaml(path)
    dist = data.get("distributed") if isinstance(data, Mapping) else None
    comm = dist.get("comm") if isinstance(dist, Mapping) else None
    tls = comm.get("tls") if isinstance(comm, Mapping) else None
    if not isinstance(tls, Mapping):
        raise ValueError(f"{path}: expected a 'distributed.comm.tls' mapping")

    base = Path(os.path.expandvars(os.fspath(path))).expanduser().parent

    def _file(value: Any, key: str, required: bool) -> str | None:
        if value is None:
            if required:
                raise ValueError(f"{path}: distributed.comm.tls.{key} is required")
            return None
        p = Path(os.path.expandvars(str(value))).expanduser()
        if not p.is_absolute():
            p = base / p
        if not p.is_file():
            raise FileNotFoundError(
                f"{path}: distributed.comm.tls.{key} names a missing file: {p}"
            )
        return str(p)

    role_section = tls.get(role) or {}
    if not isinstance(role_section, Mapping):
        raise ValueError(f"{path}: distributed.comm.tls.{role} must be a mapping")

    require = comm.get("require-encryption")
    kwargs: dict[str, Any] = {
        # Giving certificates means we want them used.
        "require_encryption": True if require is None else bool(require),
        "tls_ca_file": _file(tls.get("ca-file"), "ca-file", True),
        f"tls_{role}_cert": _file(role_section.get("cert"), f"{role}.cert", True),
    }
    key = _file(role_section.get("key"), f"{role}.key", False)
    if key is not None:
        kwargs[f"tls_{role}_key"] = key
    if tls.get("ciphers") is not None:
        kwargs["tls_ciphers"] = str(tls["ciphers"])
    for name in ("min-version", "max-version"):
        version = tls.get(name)
        if version is None:
            continue
        if version not in _TLS_VERSIONS:
            raise ValueError(
                f"{path}: distributed.comm.tls.{name} must be one of "
                f"{sorted(_TLS_VERSIONS)}, got {version!r}"
            )
        import ssl

        kwargs["tls_" + name.replace("-", "_")] = getattr(
            ssl.TLSVersion, _TLS_VERSIONS[version]
        )
    return kwargs


def make_security(path: str | os.PathLike, role: str = "client"):
    """Build a :class:`distributed.security.Security` from a TLS YAML file.

    Parameters
    ----------
    path : str or os.PathLike
        YAML file in the format described in :func:`load_tls_config`.
    role : {'client', 'scheduler', 'worker'}, default 'client'
        Whose certificate and key to use.

    Returns
    -------
    distributed.security.Security
        Security object with the file's CA, certificate and key.
    """
    from distributed.security import Security

    return Security(**load_tls_config(path, role=role))


_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def connect(address: str, tls_config: str | os.PathLike | None = None, **client_kwargs):
    """Connect a :class:`distributed.Client` to an existing scheduler.

    Parameters
    ----------
    address : str
        Scheduler address, e.g. ``"tls://scheduler.example.org:8786"``. With
        `tls_config` a bare ``host:port`` gets the ``tls://`` scheme.
    tls_config : str or os.PathLike, optional
        YAML file with the client's TLS settings (see
        :func:`load_tls_config`, e.g. ``deploy/scheduler-tls.yaml``). If None,
        no ``security`` is passed and distributed uses its own configuration.
    **client_kwargs
        Passed on to :class:`distributed.Client` (e.g. ``timeout="60s"``).

    Returns
    -------
    distributed.Client
        A client connected to the scheduler.

    Raises
    ------
    ValueError
        If `tls_config` is given with a non-``tls://`` address.
    """
    from distributed import Client

    if tls_config is None:
        return Client(address, **client_kwargs)
    if not _SCHEME.match(address):
        address = "tls://" + address
    elif not address.lower().startswith("tls://"):
        raise ValueError(
            f"address {address!r} does not use tls:// but a TLS configuration "
            f"was given; use tls://host:port"
        )
    security = make_security(tls_config, role="client")
    return Client(address, security=security, **client_kwargs)


# --------------------------------------------------------------------------
# The jobqueue fit command: python -m daskgmm.deploy
# --------------------------------------------------------------------------

#: The dask-jobqueue configuration shipped with daskgmm, the default of
#: ``python -m daskgmm.deploy --config``.
DEFAULT_CONFIG = Path(__file__).resolve().with_name("jobqueue.yaml")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Return the parser of the jobqueue fit command (:func:`main`).

    Parameters
    ----------
    prog : str, optional
        Program name shown in usage and help (default: from ``sys.argv[0]``).

    Returns
    -------
    argparse.ArgumentParser
        Parser for the command's options.
    """
    from ._covariance import COVARIANCE_TYPES, DEFAULT_COVARIANCE_TYPE

    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Start a dask-jobqueue cluster (SLURM or PBS) from a YAML config, "
            "fit daskgmm.GaussianMixture on a .npy or zarr array, and print "
            "or save the result."
        ),
        epilog=(
            "Example: %(prog)s --system slurm --jobs 4 --data X.npy "
            "--n-components 8 --out gmm.npz   |   "
            "%(prog)s --system pbs --dry-run"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("cluster")
    g.add_argument(
        "--system", choices=["slurm", "pbs"], default="slurm",
        help="job-queue system (section of the config file to use)",
    )
    g.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG,
        help="dask-jobqueue YAML file with jobqueue.slurm / jobqueue.pbs sections",
    )
    g.add_argument(
        "--jobs", type=int, default=2,
        help="number of batch jobs to run (each runs 'processes' workers)",
    )
    g.add_argument(
        "--adapt", action="store_true",
        help="keep --jobs jobs running with cluster.adapt, replacing workers "
        "that retire at their --lifetime (for fits longer than the walltime)",
    )
    g.add_argument("--queue", help="override the queue / partition")
    g.add_argument("--account", help="override the account to charge")
    g.add_argument("--walltime", help="override the job walltime, e.g. 02:00:00")
    g.add_argument("--cores", type=int, help="override the cores per job")
    g.add_argument("--memory", help="override the memory per job, e.g. 64GiB")
    g.add_argument("--processes", type=int, help="override the worker processes per job")
    g.add_argument(
        "--scheduler-host",
        help="address the scheduler listens on (must be reachable from the "
        "compute nodes); default: from the config's interface/scheduler-options",
    )
    g.add_argument(
        "--dashboard-address",
        help="scheduler dashboard address, e.g. :8787 (needs bokeh)",
    )
    g.add_argument(
        "--wait-timeout", type=float, default=3600.0,
        help="seconds to wait for the first worker to start (queue wait)",
    )
    g.add_argument(
        "--dry-run", action="store_true",
        help="print the generated job script and exit without submitting jobs",
    )

    d = p.add_argument_group("data")
    d.add_argument(
        "--data", type=Path,
        help="2-D array of shape (n_samples, n_features): a .npy file or a "
        "zarr store (required unless --dry-run)",
    )
    d.add_argument(
        "--zarr-component", default=None,
        help="array inside the zarr store (for groups)",
    )
    d.add_argument(
        "--chunk-rows", type=int, default=100_000,
        help="samples per dask chunk",
    )

    m = p.add_argument_group("model")
    m.add_argument("--n-components", "-k", type=int, default=1, help="number of mixture components K")
    m.add_argument(
        "--covariance-type", choices=COVARIANCE_TYPES,
        default=DEFAULT_COVARIANCE_TYPE, help="covariance parametrisation",
    )
    m.add_argument("--max-iter", type=int, default=100, help="maximum EM iterations")
    m.add_argument("--tol", type=float, default=1e-3, help="convergence threshold on the lower bound")
    m.add_argument("--random-state", type=int, default=None, help="seed for the initialisation")
    m.add_argument("--out", type=Path, help="save the fitted model here (model.save, .npz format)")
    m.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p


def cluster_overrides(args: argparse.Namespace) -> dict:
    """Collect the cluster keyword overrides given on the command line.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    dict
        Keyword arguments for :func:`daskgmm.deploy.make_cluster`.
    """
    overrides = {
        key: getattr(args, key)
        for key in ("queue", "account", "walltime", "cores", "memory", "processes")
        if getattr(args, key) is not None
    }
    scheduler_options = {}
    if args.scheduler_host is not None:
        scheduler_options["host"] = args.scheduler_host
    if args.dashboard_address is not None:
        scheduler_options["dashboard_address"] = args.dashboard_address
    if scheduler_options:
        overrides["scheduler_options"] = scheduler_options
    return overrides


def _read_npy_rows(path: str, start: int, stop: int):
    import numpy as np

    return np.asarray(np.load(path, mmap_mode="r")[start:stop])


def load_data(path: Path, chunk_rows: int, zarr_component: str | None = None):
    """Open a 2-D ``.npy`` file or zarr array as a lazy dask array.

    ``.npy`` blocks are read by the workers themselves (memory-mapped), so
    only file names travel through the scheduler; the file must be on a
    shared file system.

    Parameters
    ----------
    path : pathlib.Path
        ``.npy`` file, or zarr store (any other path).
    chunk_rows : int
        Number of samples per chunk; features are kept in one chunk.
    zarr_component : str, optional
        Path of the array inside a zarr group.

    Returns
    -------
    dask.array.Array
        Array of shape ``(n_samples, n_features)``.
    """
    import dask
    import dask.array as da
    import numpy as np

    if path.suffix == ".npy":
        header = np.load(path, mmap_mode="r")
        shape, dtype = header.shape, header.dtype
        del header
        if len(shape) != 2:
            raise SystemExit(f"{path}: expected a 2-D array, got shape {shape}")
        read = dask.delayed(_read_npy_rows, pure=True)
        blocks = [
            da.from_delayed(
                read(str(path), start, min(start + chunk_rows, shape[0])),
                shape=(min(start + chunk_rows, shape[0]) - start, shape[1]),
                dtype=dtype,
            )
            for start in range(0, shape[0], chunk_rows)
        ]
        return da.concatenate(blocks, axis=0)
    X = da.from_zarr(str(path), component=zarr_component)
    if X.ndim != 2:
        raise SystemExit(f"{path}: expected a 2-D array, got shape {X.shape}")
    return X.rechunk((chunk_rows, -1))


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Fit on a SLURM or PBS cluster: the command ``python -m daskgmm.deploy``
    (and ``deploy/run_jobqueue_fit.py``).

    It starts a dask scheduler in this process, submits ``--jobs`` batch jobs
    that each run dask workers (sized by ``--config``, by default the
    ``jobqueue.yaml`` shipped with daskgmm), loads the data lazily, fits,
    and prints a summary (and saves the model with ``--out``). The jobs are
    cancelled when it returns.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).
    prog : str, optional
        Program name shown in usage and help.

    Returns
    -------
    int
        Exit status.

    Examples
    --------
    >>> main(["--system", "slurm", "--dry-run"])  # doctest: +SKIP
    #!/usr/bin/env bash
    #SBATCH -J daskgmm-worker
    ...
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not args.dry_run and args.data is None:
        parser.error("--data is required unless --dry-run is given")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if not args.dry_run and args.out is not None and args.out.exists() and not args.overwrite:
        # Fail before submitting any job rather than after the fit.
        parser.error(f"--out {args.out} already exists; pass --overwrite to replace it")

    try:
        cluster = make_cluster(args.system, args.config, **cluster_overrides(args))
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    with cluster:
        if args.dry_run:
            print(cluster.job_script())
            return 0

        from distributed import Client

        from .mixture import GaussianMixture

        X = load_data(args.data, args.chunk_rows, args.zarr_component)
        if args.adapt:
            cluster.adapt(minimum_jobs=args.jobs, maximum_jobs=args.jobs)
        else:
            cluster.scale(jobs=args.jobs)
        with Client(cluster) as client:
            print(f"dashboard: {client.dashboard_link}", flush=True)
            print(f"waiting for workers ({args.jobs} job(s) submitted) ...", flush=True)
            t_submit = time.perf_counter()
            client.wait_for_workers(1, timeout=args.wait_timeout)
            job_ids = [
                str(job.job_id) for job in list(cluster.workers.values())
                if getattr(job, "job_id", None) is not None
            ]
            print(
                f"first worker up after {time.perf_counter() - t_submit:.1f} s; "
                f"batch job id(s): {' '.join(job_ids) or 'none'}",
                flush=True,
            )
            t0 = time.perf_counter()
            model = GaussianMixture(
                n_components=args.n_components,
                covariance_type=args.covariance_type,
                max_iter=args.max_iter,
                tol=args.tol,
                random_state=args.random_state,
            )
            model.fit(X)
            elapsed = time.perf_counter() - t0

        print(f"fitted {args.n_components} components on {X.shape} in {elapsed:.1f} s")
        for attr in ("converged_", "n_iter_", "lower_bound_", "weights_", "means_"):
            if hasattr(model, attr):
                print(f"{attr} = {getattr(model, attr)}")
        if args.out is not None:
            model.save(args.out, overwrite=args.overwrite)
            print(f"saved model to {args.out}")
    return 0



if __name__ == "__main__":
    sys.exit(main(prog="python -m daskgmm.deploy"))
