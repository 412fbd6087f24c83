"""Helpers to run daskgmm on HPC job queues or on an existing scheduler.

Three deployment paths are supported (see ``deploy/README.md``):

* SLURM or PBS through `dask-jobqueue <https://jobqueue.dask.org>`_:
  :func:`load_jobqueue_config` reads a dask-jobqueue YAML file (the format of
  ``deploy/jobqueue.yaml``) and :func:`make_cluster` turns one of its
  sections into a ``SLURMCluster`` or ``PBSCluster``;
* an already running ``dask scheduler``, optionally secured with TLS:
  :func:`load_tls_config` / :func:`make_security` read the TLS file names from
  a YAML file in distributed's configuration format (the format of
  ``deploy/scheduler-tls.yaml``) and :func:`connect` returns a
  :class:`distributed.Client`.

``dask-jobqueue`` is an optional dependency (``pip install
daskgmm[jobqueue]``); it is imported only when a cluster is made.
"""

from __future__ import annotations

import os
import re
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
