"""Tests of the HPC deployment helpers (daskgmm.deploy, deploy/).

No batch system, network or remote scheduler is needed: dask-jobqueue renders
job scripts without ``sbatch``/``qsub``, the in-process scheduler it starts
listens on 127.0.0.1 only, and TLS is checked up to the SSL context.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import re
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from daskgmm import deploy

dask_jobqueue = pytest.importorskip("dask_jobqueue")

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "jobqueue.yaml"
TLS_CONFIG = REPO / "deploy" / "scheduler-tls.yaml"
SCRIPT = REPO / "deploy" / "run_jobqueue_fit.py"

# Keep the in-process scheduler on the loopback interface.
LOCAL = {"scheduler_options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}}


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def small_config(tmp_path):
    """A config with round numbers, independent of deploy/jobqueue.yaml."""
    return write_yaml(
        tmp_path / "jobqueue.yaml",
        """
        jobqueue:
          slurm:
            name: gmm-test
            cores: 6
            processes: 3
            memory: 12GiB
            walltime: "02:30:00"
            local-directory: /scratch/local
            worker-extra-args: ["--lifetime", "140m"]
            scheduler-options: {dashboard_address: "127.0.0.1:0"}
          pbs:
            name: gmm-test
            cores: 6
            processes: 3
            memory: 12GiB
            walltime: "02:30:00"
            worker-extra-args: ["--lifetime", "140m"]
        """,
    )


def script_of(system, config, **overrides):
    with deploy.make_cluster(system, config, **{**LOCAL, **overrides}) as cluster:
        assert type(cluster).__name__ == deploy.SUPPORTED_SYSTEMS[system]
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        return cluster.job_script()


# --------------------------------------------------------------------------
# deploy/jobqueue.yaml and job scripts
# --------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_shipped_config_is_valid(system):
    section = deploy.load_jobqueue_config(CONFIG, system)
    assert section["cores"] % section["processes"] == 0
    assert isinstance(section["walltime"], str)
    assert "--memory-limit" not in section["worker-extra-args"]  # derived by jobqueue


def test_shipped_config_renders_slurm_script():
    from dask.utils import parse_bytes

    sec = deploy.load_jobqueue_config(CONFIG, "slurm")
    script = script_of("slurm", CONFIG)
    assert script.startswith("#!/usr/bin/env bash")
    assert f"#SBATCH --cpus-per-task={sec['cores']}\n" in script
    gib = parse_bytes(sec["memory"]) / 2**30
    assert f"#SBATCH --mem={int(np.ceil(gib))}G\n" in script
    assert f"#SBATCH -t {sec['walltime']}\n" in script
    assert f"#SBATCH -J {sec['name']}\n" in script
    assert "#SBATCH -p" not in script and "#SBATCH -A" not in script  # null in the file
    assert f"--nthreads {sec['cores'] // sec['processes']} " in script
    assert f"--memory-limit {gib / sec['processes']:.2f}GiB " in script
    assert f"--nworkers {sec['processes']} " in script
    assert " ".join(sec["worker-extra-args"]) in script


def test_shipped_config_renders_pbs_script():
    sec = deploy.load_jobqueue_config(CONFIG, "pbs")
    script = script_of("pbs", CONFIG)
    assert f"#PBS -l select=1:ncpus={sec['cores']}:mem=" in script
    assert f"#PBS -l walltime={sec['walltime']}\n" in script
    assert f"#PBS -N {sec['name']}\n" in script
    assert f"--nthreads {sec['cores'] // sec['processes']} " in script
    assert "--memory-limit " in script


def test_slurm_script_exact(small_config):
    script = script_of("slurm", small_config)
    for line in [
        "#SBATCH -J gmm-test",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --mem=12G",
        "#SBATCH -t 02:30:00",
    ]:
        assert line + "\n" in script
    worker = script.strip().splitlines()[-1]
    assert "-m distributed.cli.dask_worker tcp://127.0.0.1:" in worker
    assert "--nthreads 2 --memory-limit 4.00GiB --nworkers 3 --nanny" in worker
    assert "--local-directory /scratch/local" in worker
    assert worker.endswith("--lifetime 140m")


def test_pbs_script_exact(small_config):
    script = script_of("pbs", small_config)
    assert "#PBS -N gmm-test\n" in script
    assert "#PBS -l select=1:ncpus=6:mem=12GB\n" in script
    assert "#PBS -l walltime=02:30:00\n" in script
    assert "--nthreads 2 --memory-limit 4.00GiB --nworkers 3" in script


def test_slurm_overrides_change_script(small_config):
    script = script_of(
        "slurm", small_config,
        queue="short", account="proj42", walltime="00:20:00",
        cores=16, processes=4, memory="64GiB",
        job_extra_directives=["--exclusive"],
    )
    for line in [
        "#SBATCH -p short",
        "#SBATCH -A proj42",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --mem=64G",
        "#SBATCH -t 00:20:00",
        "#SBATCH --exclusive",
    ]:
        assert line + "\n" in script
    assert "--nthreads 4 --memory-limit 16.00GiB --nworkers 4" in script
    assert "--cpus-per-task=6" not in script and "02:30:00" not in script
    # Keys not overridden still come from the file.
    assert "#SBATCH -J gmm-test" in script and "--lifetime 140m" in script


def test_pbs_overrides_change_script(small_config):
    script = script_of(
        "pbs", small_config, queue="workq", account="proj42",
        walltime="04:00:00", cores=12, memory="48GiB",
    )
    assert "#PBS -q workq\n" in script
    assert "#PBS -A proj42\n" in script
    assert "#PBS -l select=1:ncpus=12:mem=48GB\n" in script
    assert "#PBS -l walltime=04:00:00\n" in script
    assert "--nthreads 4 --memory-limit 16.00GiB --nworkers 3" in script


def test_jobqueue_kwargs_mapping():
    section = {
        "name": "w", "cores": 4, "memory": "8GiB", "queue": None,
        "death-timeout": 90, "worker-extra-args": ["--lifetime", "1h"],
        "scheduler-options": {"dashboard_address": ":8787", "port": 0},
    }
    kwargs = deploy.jobqueue_kwargs(
        section, **{"walltime": "00:10:00", "death-timeout": 30},
        scheduler_options={"host": "127.0.0.1", "port": 8786},
    )
    assert kwargs == {
        "job_name": "w",  # 'name' would name the cluster object, not the job
        "cores": 4,
        "memory": "8GiB",
        "death_timeout": 30,
        "worker_extra_args": ["--lifetime", "1h"],
        "walltime": "00:10:00",
        "scheduler_options": {"dashboard_address": ":8787", "port": 8786, "host": "127.0.0.1"},
    }
    assert "queue" not in kwargs  # null keys fall back to dask's configuration


def test_make_cluster_from_dask_config():
    import dask

    with dask.config.set({"jobqueue.slurm.cores": 4, "jobqueue.slurm.memory": "6GiB",
                          "jobqueue.slurm.processes": 1}):
        script = script_of("slurm", None)
    assert "#SBATCH --cpus-per-task=4\n" in script
    assert "#SBATCH --mem=6G\n" in script
    assert "--nthreads 4 --memory-limit 6.00GiB" in script


# --------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------


def test_missing_section_raises(tmp_path):
    path = write_yaml(tmp_path / "only_slurm.yaml", """
        jobqueue:
          slurm: {cores: 4, memory: 8GiB}
        """)
    with pytest.raises(ValueError, match=r"no 'jobqueue\.pbs' section.*\['slurm'\]"):
        deploy.load_jobqueue_config(path, "pbs")
    with pytest.raises(ValueError, match=r"no 'jobqueue\.pbs' section"):
        deploy.make_cluster("pbs", path)
    assert deploy.load_jobqueue_config(path, "slurm") == {"cores": 4, "memory": "8GiB"}


@pytest.mark.parametrize(
    "body, match",
    [
        ("slurm: {cores: 4, memory: 8GiB}\n", "top-level 'jobqueue' mapping"),
        ("jobqueue: [slurm]\n", "top-level 'jobqueue' mapping"),
        ("jobqueue:\n  slurm: 4\n", "must be a mapping"),
        ("jobqueue:\n  slurm: {cores: 4, memory: 8GiB, walltme: '01:00:00'}\n",
         r"unknown key\(s\) \['walltme'\]"),
        ("jobqueue:\n  slurm: {cores: 4}\n", r"jobqueue\.slurm\.memory is required"),
        ("jobqueue:\n  slurm: {memory: 8GiB}\n", r"jobqueue\.slurm\.cores is required"),
        ("jobqueue:\n  slurm: {cores: 8, processes: 3, memory: 8GiB}\n", "multiple of"),
        ("jobqueue:\n  slurm: {cores: 0, memory: 8GiB}\n", "positive integer"),
        ("jobqueue:\n  slurm: {cores: 4, memory: lots}\n", "must be a size"),
        ("jobqueue:\n  slurm: {cores: 4, memory: 8GiB, walltime: 1:00:00}\n",
         "quoted string"),  # YAML 1.1 reads 1:00:00 as 3600
        ("jobqueue:\n  slurm: {cores: 4, memory: 8GiB, worker-extra-args: --lifetime 1h}\n",
         "list of strings"),
        ("jobqueue:\n  slurm: {cores: 4, memory: 8GiB, job-cpu: 4}\n  pbs: {}\n", None),
        ("jobqueue: {slurm: {cores: 4, memory: 8GiB, resource-spec: x}}\n",
         r"unknown key\(s\) \['resource-spec'\]"),
        ("jobqueue: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_config_raises(tmp_path, body, match):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    if match is None:  # control case: valid SLURM-only key
        assert deploy.load_jobqueue_config(path, "slurm")["job-cpu"] == 4
        return
    with pytest.raises(ValueError, match=match):
        deploy.load_jobqueue_config(path, "slurm")


def test_bad_system_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported job-queue system 'sge'.*\['pbs', 'slurm'\]"):
        deploy.load_jobqueue_config(CONFIG, "sge")
    with pytest.raises(ValueError, match="unsupported"):
        deploy.make_cluster("lsf", CONFIG)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        deploy.load_jobqueue_config(tmp_path / "nope.yaml")


def test_missing_dask_jobqueue_has_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install daskgmm\[jobqueue\]"):
        deploy.make_cluster("slurm", CONFIG)


# --------------------------------------------------------------------------
# deploy/run_jobqueue_fit.py
# --------------------------------------------------------------------------


def run_script(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True, text=True, env=env, timeout=60, cwd=REPO,
    )


def test_script_dry_run_prints_slurm_script():
    res = run_script("--dry-run", "--system", "slurm", "--scheduler-host", "127.0.0.1",
                     "--dashboard-address", "127.0.0.1:0", "--queue", "debug", "--cores", "4")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("#!/usr/bin/env bash")
    assert "#SBATCH" in res.stdout
    assert "#SBATCH -p debug\n" in res.stdout
    assert "#SBATCH --cpus-per-task=4\n" in res.stdout
    assert "dask_worker tcp://127.0.0.1:" in res.stdout


def test_script_dry_run_pbs_and_errors(tmp_path):
    res = run_script("--dry-run", "--system", "pbs", "--scheduler-host", "127.0.0.1",
                     "--dashboard-address", "127.0.0.1:0", "--walltime", "03:00:00")
    assert res.returncode == 0, res.stderr
    assert "#PBS -l walltime=03:00:00\n" in res.stdout and "#SBATCH" not in res.stdout

    bad = write_yaml(tmp_path / "slurm_only.yaml", "jobqueue: {slurm: {cores: 2, memory: 1GiB}}\n")
    res = run_script("--dry-run", "--system", "pbs", "--config", str(bad))
    assert res.returncode == 2
    assert "no 'jobqueue.pbs' section" in res.stderr

    res = run_script("--system", "slurm")  # no --data and not a dry run
    assert res.returncode == 2 and "--data is required" in res.stderr


def test_script_help_documents_options():
    res = run_script("--help")
    assert res.returncode == 0
    for option in ("--system", "--config", "--jobs", "--dry-run", "--data",
                   "--n-components", "--covariance-type", "--out"):
        assert option in res.stdout


@pytest.fixture(scope="module")
def fit_script():
    spec = importlib.util.spec_from_file_location("run_jobqueue_fit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_load_data_npy(tmp_path, fit_script):
    X = np.arange(70.0).reshape(35, 2)
    np.save(tmp_path / "X.npy", X)
    dX = fit_script.load_data(tmp_path / "X.npy", chunk_rows=10)
    assert dX.shape == (35, 2) and dX.chunks == ((10, 10, 10, 5), (2,))
    # Only the file name is in the graph: the data are read by the tasks.
    assert sum(getattr(v, "nbytes", 0) for v in dict(dX.dask).values()) < X.nbytes
    np.testing.assert_array_equal(dX.compute(scheduler="sync"), X)


def test_script_load_data_zarr(tmp_path, fit_script):
    pytest.importorskip("zarr")
    import dask.array as da

    X = np.random.default_rng(0).normal(size=(30, 3))
    da.from_array(X, chunks=(7, 3)).to_zarr(str(tmp_path / "X.zarr"))
    dX = fit_script.load_data(tmp_path / "X.zarr", chunk_rows=12)
    assert dX.chunks == ((12, 12, 6), (3,))
    np.testing.assert_array_equal(dX.compute(scheduler="sync"), X)


def test_script_fit_end_to_end(tmp_path, fit_script, monkeypatch, capsys):
    """The non-dry-run path, with an in-process LocalCluster standing in for SLURM."""
    import daskgmm

    if getattr(daskgmm, "GaussianMixture", None) is None:
        pytest.skip("daskgmm.GaussianMixture is not available yet")
    from distributed import LocalCluster

    scaled = []

    class FakeJobqueueCluster(LocalCluster):
        def scale(self, n=None, jobs=0, **kwargs):  # JobQueueCluster.scale(jobs=N)
            scaled.append(jobs if n is None else n)
            return super().scale(jobs if n is None else n)

    clusters = []

    def fake_make_cluster(system, config_path=None, **overrides):
        assert system == "slurm" and overrides == {"queue": "short"}
        clusters.append(FakeJobqueueCluster(
            n_workers=0, processes=False, threads_per_worker=1,  # inproc://, no sockets
            dashboard_address=None))
        return clusters[-1]

    monkeypatch.setattr(deploy, "make_cluster", fake_make_cluster)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-5, 1, size=(200, 2)), rng.normal(5, 1, size=(200, 2))])
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "gmm.npz"
    argv = ["--system", "slurm", "--queue", "short", "--jobs", "1",
            "--data", str(tmp_path / "X.npy"), "--chunk-rows", "100",
            "-k", "2", "--covariance-type", "diag", "--random-state", "0",
            "--wait-timeout", "30", "--out", str(out)]
    assert fit_script.main(argv) == 0
    assert scaled[0] == 1  # scale(jobs=1) before the fit
    assert clusters[0].status.name == "closed"
    printed = capsys.readouterr().out
    assert "fitted 2 components on (400, 2)" in printed
    assert "batch job id(s): none" in printed  # LocalCluster workers have no job id
    assert f"saved model to {out}" in printed

    model = daskgmm.load(out)
    np.testing.assert_allclose(np.sort(model.means_[:, 0]), [-5, 5], atol=0.5)

    # An existing --out is refused before any cluster is made.
    with pytest.raises(SystemExit) as exc:
        fit_script.main(argv)
    assert exc.value.code == 2 and len(clusters) == 1
    assert "pass --overwrite" in capsys.readouterr().err


def test_packaged_command_runs_without_a_checkout(tmp_path):
    """``python -m daskgmm.deploy`` from elsewhere than the repository, its
    default configuration shipped inside the package."""
    import tomllib

    import daskgmm

    package = Path(daskgmm.__file__).parent
    assert deploy.DEFAULT_CONFIG == package / "jobqueue.yaml" and deploy.DEFAULT_CONFIG.is_file()
    assert CONFIG.samefile(deploy.DEFAULT_CONFIG)  # deploy/jobqueue.yaml is that file
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "jobqueue.yaml" in pyproject["tool"]["setuptools"]["package-data"]["daskgmm"]

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "daskgmm.deploy", *args], capture_output=True, text=True,
                              env=env, timeout=60, cwd=tmp_path)

    res = run("--dry-run", "--system", "slurm", "--scheduler-host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0")
    assert res.returncode == 0, res.stderr
    from_script = run_script("--dry-run", "--system", "slurm", "--scheduler-host", "127.0.0.1",
                             "--dashboard-address", "127.0.0.1:0")
    port = re.compile(r"tcp://127\.0\.0\.1:\d+")
    assert port.sub("ADDRESS", res.stdout) == port.sub("ADDRESS", from_script.stdout)  # the same command
    assert "#SBATCH --cpus-per-task=8\n" in res.stdout and "#SBATCH --mem=32G\n" in res.stdout
    assert "--lifetime 55m" in res.stdout  # the shipped file's settings
    res = run("--help")
    assert res.returncode == 0 and res.stdout.startswith("usage: python -m daskgmm.deploy [-h]")
    assert "daskgmm/jobqueue.yaml)" in res.stdout  # the default --config
    res = run("--system", "slurm")
    assert res.returncode == 2 and "--data is required" in res.stderr


# --------------------------------------------------------------------------
# Existing scheduler with TLS
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA and a client certificate signed by it, as PEM files."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, key, issuer, issuer_key, ca):
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "ca.pem": cert("daskgmm-test-ca", ca_key, "daskgmm-test-ca", ca_key, True),
        "client.pem": cert("daskgmm-client", client_key, "daskgmm-test-ca", ca_key, False),
    }
    for name, c in files.items():
        (d / name).write_bytes(c.public_bytes(serialization.Encoding.PEM))
    (d / "client.key").write_bytes(client_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return d


@pytest.fixture
def tls_yaml(certs, tmp_path):
    """deploy/scheduler-tls.yaml with its placeholders pointing at real files."""
    text = TLS_CONFIG.read_text().replace("/path/to/tls/", f"{certs}/")
    return write_yaml(tmp_path / "tls.yaml", text)


def test_shipped_tls_file_uses_distributed_keys():
    data = yaml.safe_load(TLS_CONFIG.read_text())
    tls = data["distributed"]["comm"]["tls"]
    assert data["distributed"]["comm"]["require-encryption"] is True
    assert {"ca-file", "client"} <= set(tls) and {"cert", "key"} <= set(tls["client"])
    with pytest.raises(FileNotFoundError, match="ca-file names a missing file"):
        deploy.load_tls_config(TLS_CONFIG)  # placeholders, not real files


def test_make_security_loads_certificates(tls_yaml, certs):
    kwargs = deploy.load_tls_config(tls_yaml)
    assert kwargs["tls_ca_file"] == str(certs / "ca.pem")
    assert kwargs["tls_client_cert"] == str(certs / "client.pem")
    assert kwargs["tls_client_key"] == str(certs / "client.key")
    assert kwargs["tls_min_version"] is ssl.TLSVersion.TLSv1_2

    sec = deploy.make_security(tls_yaml)
    assert sec.require_encryption is True
    assert sec.tls_ca_file == str(certs / "ca.pem")
    assert sec.tls_client_cert == str(certs / "client.pem")
    # Building the SSL context reads and checks the CA, cert and key files.
    ctx = sec.get_connection_args("client")["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert len(ctx.get_ca_certs()) == 1


def test_tls_relative_paths_and_errors(certs, tmp_path):
    rel = os.path.relpath(certs, tmp_path)
    path = write_yaml(tmp_path / "rel.yaml", f"""
        distributed:
          comm:
            tls:
              ca-file: {rel}/ca.pem
              client: {{cert: {rel}/client.pem, key: {rel}/client.key}}
        """)
    kwargs = deploy.load_tls_config(path)
    assert Path(kwargs["tls_client_key"]).resolve() == (certs / "client.key").resolve()
    assert kwargs["require_encryption"] is True  # certificates given: encrypt

    write_yaml(path, f"distributed: {{comm: {{tls: {{ca-file: {certs}/ca.pem}}}}}}\n")
    with pytest.raises(ValueError, match=r"tls\.client\.cert is required"):
        deploy.load_tls_config(path)
    write_yaml(path, "distributed: {comm: {}}\n")
    with pytest.raises(ValueError, match=r"'distributed\.comm\.tls' mapping"):
        deploy.load_tls_config(path)


class RecordingClient:
    """Stands in for distributed.Client: records its arguments, connects nowhere."""

    def __init__(self, address, **kwargs):
        self.address = address
        self.kwargs = kwargs


def test_connect_builds_tls_client(tls_yaml, certs, monkeypatch):
    import distributed

    monkeypatch.setattr(distributed, "Client", RecordingClient)
    client = deploy.connect("127.0.0.1:8786", tls_yaml, timeout="5s")
    assert client.address == "tls://127.0.0.1:8786"
    sec = client.kwargs["security"]
    assert isinstance(sec, distributed.security.Security)
    assert sec.require_encryption is True
    assert (sec.tls_ca_file, sec.tls_client_cert, sec.tls_client_key) == (
        str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key"))
    assert client.kwargs["timeout"] == "5s"

    assert deploy.connect("tls://127.0.0.1:8786", tls_yaml).address == "tls://127.0.0.1:8786"
    plain = deploy.connect("tcp://127.0.0.1:8786")
    assert plain.address == "tcp://127.0.0.1:8786" and "security" not in plain.kwargs
    with pytest.raises(ValueError, match="does not use tls://"):
        deploy.connect("tcp://127.0.0.1:8786", tls_yaml)
