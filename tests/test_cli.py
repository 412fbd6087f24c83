"""The ``daskgmm`` command line (daskgmm.cli).

Every command runs once as a real subprocess (``python -m daskgmm.cli``) on
small data; option handling and error messages are also checked in-process
through ``main(argv)``, which is what the installed ``daskgmm`` script calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import daskgmm
from daskgmm import ConvergenceWarning, GaussianMixture, cli
from daskgmm import xarray as dxr
from daskgmm.io import read_archive

from .conftest import correlated_bands

xr = pytest.importorskip("xarray")

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "daskgmm.cli", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def two_blobs(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(size=(n // 2, 2)), rng.normal(size=(n - n // 2, 2)) * 0.5 + [5.0, 3.0]])


def small_cube(seed=0):
    rng = np.random.default_rng(seed)
    means = np.array([[0.1, 0.4, 0.2], [0.3, 0.1, 0.5], [0.6, 0.6, 0.1]])
    shape = (2, 10, 12)
    values = means[rng.integers(3, size=shape)] + rng.normal(scale=0.03, size=shape + (3,))
    values[:, :2, :3] = np.nan
    values[1, 5, 5, 0] = np.nan
    return xr.DataArray(
        values.astype(np.float32),
        dims=("time", "y", "x", "band"),
        coords={
            "time": pd.date_range("2024-01-01", periods=2),
            "y": np.arange(10) * 30.0,
            "x": np.arange(12) * 30.0,
            "band": ["red", "nir", "swir"],
        },
        name="reflectance",
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Inputs written once: a .npy table, a zarr store and a netCDF file."""
    folder = tmp_path_factory.mktemp("cli")
    np.save(folder / "X.npy", two_blobs())
    cube = small_cube()
    cube.to_dataset().chunk({"time": 1, "y": 5, "x": 6}).to_zarr(folder / "cube.zarr")
    cube.to_dataset().to_netcdf(folder / "cube.nc", encoding={"reflectance": {"chunksizes": (1, 5, 6, 3)}})
    return folder


def check_ok(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


# --------------------------------------------------------------------------
# Subprocesses: every command once
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_npy_on_a_local_cluster(workdir):
    result = check_ok(run_cli("fit", "X.npy", "-k", "2", "--random-state", "0", "--workers", "1",
                              "--threads-per-worker", "2", cwd=workdir))
    assert "Dask LocalCluster: 1 workers, 2 threads" in result.stderr
    assert "iteration    1  log-likelihood" in result.stderr  # per-iteration log-likelihood
    assert "saved model to X.daskgmm.npz" in result.stdout  # default name: INPUT stem + .daskgmm.npz
    model = daskgmm.load(workdir / "X.daskgmm.npz")
    reference = GaussianMixture(2, random_state=0).fit(two_blobs())
    # Draws are keyed by row index: the same fit whatever the chunks or workers.
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.covariances_, reference.covariances_, rtol=1e-8, atol=1e-10)
    assert model.n_iter_ == reference.n_iter_
    _, meta = read_archive(workdir / "X.daskgmm.npz")
    assert meta["input"] == {"source": "X.npy", "format": "npy", "labelled": False, "n_samples_skipped": 0}


@pytest.mark.slow
def test_predict_npy_writes_labels(workdir, tmp_path):
    model = GaussianMixture(2, random_state=0).fit(two_blobs())
    model.save(tmp_path / "m.npz")
    result = check_ok(run_cli("predict", tmp_path / "m.npz", workdir / "X.npy", "--out", tmp_path / "labels.npy",
                              "--scheduler", "threads", cwd=tmp_path))
    labels = np.load(tmp_path / "labels.npy")
    np.testing.assert_array_equal(labels, model.predict(two_blobs()))
    assert labels.dtype == np.int64
    assert "wrote labels (sample) of 2000 samples" in result.stdout
    assert "0 without a label (-1)" in result.stdout


@pytest.mark.slow
def test_fit_and_predict_a_zarr_cube(workdir, tmp_path):
    model_path = tmp_path / "cube.daskgmm.npz"
    result = check_ok(run_cli(
        "fit", workdir / "cube.zarr", "-k", "3", "--variable", "reflectance", "--feature-dim", "band",
        "--sample-dims", "time,y,x", "--random-state", "1", "--out", model_path, "--scheduler", "threads",
        "--covariance-type", "diag", "--max-iter", "50", "--tol", "1e-4", cwd=tmp_path,
    ))
    cube = small_cube()
    n_nan = int((~np.isfinite(cube).all("band")).sum())
    assert f"skipped {n_nan} samples with a missing (NaN) feature" in result.stdout
    model = daskgmm.load(model_path)
    assert (model.covariance_type, model.max_iter, model.tol, model.random_state) == ("diag", 50, 1e-4, 1)
    _, meta = read_archive(model_path)
    assert meta["input"]["feature_dim"] == "band"
    assert meta["input"]["features"] == ["red", "nir", "swir"]
    assert meta["input"]["n_samples_skipped"] == n_nan

    # predict: the layout recorded at fit time is the default.
    out = tmp_path / "labels.zarr"
    result = check_ok(run_cli("predict", model_path, workdir / "cube.zarr", "--out", out, "--proba",
                              "--scheduler", "threads", cwd=tmp_path))
    assert f"{n_nan} without a label (-1)" in result.stdout
    written = xr.open_zarr(out)
    assert set(written.data_vars) == {"label", "probability"}
    assert written.label.dims == ("time", "y", "x")
    for name in ("time", "y", "x"):
        np.testing.assert_array_equal(written[name].values, cube[name].values)
    expected = dxr.predict(model, cube, feature_dim="band")
    np.testing.assert_array_equal(written.label.values, expected.values)
    assert written.label.attrs["missing_label"] == -1
    assert written.probability.dims == ("time", "y", "x", "component")


@pytest.mark.slow
def test_fit_and_predict_a_netcdf_cube(workdir, tmp_path):
    model_path = tmp_path / "nc.npz"
    check_ok(run_cli("fit", workdir / "cube.nc", "-k", "3", "--feature-dim", "band", "--random-state", "0",
                     "--out", model_path, "--scheduler", "threads", "--quiet", cwd=tmp_path))
    out = tmp_path / "labels.nc"
    check_ok(run_cli("predict", model_path, workdir / "cube.nc", "--out", out, "--score",
                     "--scheduler", "threads", "--quiet", cwd=tmp_path))
    model = daskgmm.load(model_path)
    with xr.open_dataset(out) as written:
        cube = small_cube()
        np.testing.assert_array_equal(written.label.values, dxr.predict(model, cube, "band").values)
        np.testing.assert_allclose(
            written.log_likelihood.values, dxr.score_samples(model, cube, "band").values, rtol=1e-5
        )
        assert written.log_likelihood.dtype == np.float32


@pytest.mark.slow
def test_info_prints_metadata_and_components(tmp_path):
    model = GaussianMixture(2, covariance_type="tied", random_state=0).fit(two_blobs())
    model.save(tmp_path / "m.npz")
    result = check_ok(run_cli("info", "m.npz", cwd=tmp_path))
    out = result.stdout
    assert "daskgmm-model format version 1" in out
    assert "2 components, 2 features, covariance_type=tied" in out
    assert f"after {model.n_iter_} iterations, lower bound {model.lower_bound_:.6f}" in out
    assert "random_state=0" in out
    assert out.count("\n") >= 7  # header lines + a table row per component
    result = check_ok(run_cli("info", "m.npz", "--json", cwd=tmp_path))
    assert json.loads(result.stdout)["covariance_type"] == "tied"


@pytest.mark.slow
def test_demo_fits_on_a_local_cluster_and_plots(tmp_path):
    result = check_ok(run_cli("demo", "--n-samples", "4000", "--plot", "demo.png", cwd=tmp_path))
    out = result.stdout
    assert "Dask LocalCluster: 2 workers, 2 threads" in out
    assert "fit: converged after" in out
    assert "components, true vs fitted" in out
    rows = re.findall(r"^ +(\d) +(0\.\d{3}) +(0\.\d{3}) ", out, flags=re.M)  # comp, true weight, fitted weight
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert [float(r[1]) for r in rows] == [0.45, 0.35, 0.2]
    np.testing.assert_allclose([float(r[2]) for r in rows], [0.45, 0.35, 0.2], atol=0.03)
    error = float(out.split("largest error on a mean coordinate: ")[1].split()[0])
    assert error < 0.3
    png = (tmp_path / "demo.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "plot written to demo.png" in out


@pytest.mark.slow
def test_errors_are_one_line_without_traceback(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"not a zip file at all")
    np.save(tmp_path / "X.npy", two_blobs(100))
    result = run_cli("predict", "broken.npz", "X.npy", "--scheduler", "threads", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("daskgmm: error: broken.npz is not a readable daskgmm file")
    assert result.stdout == ""


def test_installed_script():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"daskgmm": "daskgmm.cli:main"}
    assert callable(cli.main)
    script = shutil.which("daskgmm")
    if script is None:
        pytest.skip("the daskgmm script is not installed on PATH (pip install . installs it)")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"daskgmm {daskgmm.__version__}"


# --------------------------------------------------------------------------
# In-process: options, defaults and error messages
# --------------------------------------------------------------------------


def test_help_documents_every_option(capsys):
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    top = capsys.readouterr().out
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(subparsers.choices) == {"fit", "predict", "info", "demo"}
    for name, sub in subparsers.choices.items():
        assert name in top
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        text = capsys.readouterr().out
        for action in sub._actions:
            if action.help == "==SUPPRESS==":
                continue
            assert action.help, f"{name}: {action.dest} has no help"
            names = action.option_strings or [action.dest]
            assert any(n in text for n in names), f"{name} --help lacks {names}"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"daskgmm {daskgmm.__version__}"


def test_bad_command_line_exits_with_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", "X.npy"])  # no --n-components
    assert exit_info.value.code == 2
    assert "the following arguments are required: -k/--n-components" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", "X.npy", "-k", "0"])
    assert exit_info.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err


def error_of(capsys, argv):
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("daskgmm: error: "), captured.err
    return lines[0][len("daskgmm: error: "):]


def test_fit_refuses_to_overwrite_before_computing(workdir, tmp_path, capsys):
    existing = tmp_path / "model.npz"
    existing.write_bytes(b"keep me")
    message = error_of(capsys, ["fit", str(workdir / "X.npy"), "-k", "2", "--out", str(existing)])
    assert message == f"{existing} already exists; pass --overwrite to replace it."
    assert existing.read_bytes() == b"keep me"


def test_input_errors(workdir, tmp_path, capsys):
    threads = ["--scheduler", "threads", "-q"]
    assert "no such file or directory" in error_of(capsys, ["fit", str(tmp_path / "nope.npy"), "-k", "2", *threads])
    (tmp_path / "data.csv").write_text("1,2\n")
    assert "cannot tell the format of" in error_of(capsys, ["fit", str(tmp_path / "data.csv"), "-k", "2", *threads])
    message = error_of(capsys, ["fit", str(workdir / "cube.nc"), "-k", "2", *threads])
    assert "holds labelled data: name the dimension holding the features with --feature-dim" in message
    assert "reflectance(time, y, x, band)" in message
    message = error_of(capsys, ["fit", str(workdir / "cube.zarr"), "-k", "2", *threads])
    assert "holds labelled data" in message
    message = error_of(capsys, ["fit", str(workdir / "cube.nc"), "-k", "2", "--feature-dim", "wavelength", *threads])
    assert "no variable of" in message and "'wavelength'" in message
    message = error_of(capsys, ["fit", str(workdir / "cube.nc"), "-k", "2", "--variable", "ndvi", *threads])
    assert "has no variable ndvi" in message
    message = error_of(capsys, ["fit", str(workdir / "X.npy"), "-k", "2", "--feature-dim", "band",
                                "--out", str(tmp_path / "m.npz"), *threads])
    assert "plain .npy array" in message
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    assert "expected (n_samples, n_features)" in error_of(capsys, ["fit", str(tmp_path / "cube.npy"), "-k", "2", *threads])
    message = error_of(capsys, ["fit", str(workdir / "X.npy"), "-k", "5000", "--out", str(tmp_path / "m.npz"), *threads])
    assert "n_samples >= n_components" in message
    assert not (tmp_path / "m.npz").exists()


def test_predict_errors(workdir, tmp_path, capsys):
    GaussianMixture(2, random_state=0).fit(two_blobs()).save(tmp_path / "m.npz")
    threads = ["--scheduler", "threads", "-q"]
    message = error_of(capsys, ["predict", str(tmp_path / "m.npz"), str(workdir / "X.npy"), "--out",
                                str(tmp_path / "l.npy"), "--proba", *threads])
    assert message == "--proba and --score need a .zarr or .nc output; a .npy output holds labels only."
    assert not (tmp_path / "l.npy").exists()
    message = error_of(capsys, ["predict", str(tmp_path / "m.npz"), str(workdir / "X.npy"), "--out",
                                str(tmp_path / "l.txt"), *threads])
    assert "cannot tell the output format" in message
    message = error_of(capsys, ["predict", str(tmp_path / "m.npz"), str(workdir / "cube.nc"),
                                "--feature-dim", "band", *threads])
    assert "X has 3 features, but GaussianMixture is expecting 2" in message
    (tmp_path / "l.npy").write_bytes(b"old")
    message = error_of(capsys, ["predict", str(tmp_path / "m.npz"), str(workdir / "X.npy"), "--out",
                                str(tmp_path / "l.npy"), *threads])
    assert "already exists; pass --overwrite" in message
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(workdir / "X.npy"), "--out", str(tmp_path / "l.npy"),
                     "--overwrite", *threads]) == 0
    assert np.load(tmp_path / "l.npy").shape == (2000,)


def test_predict_of_a_table_writes_the_attributes_of_the_labelled_outputs(workdir, tmp_path):
    pytest.importorskip("zarr")
    xr = pytest.importorskip("xarray")
    model = GaussianMixture(2, random_state=0).fit(two_blobs())
    model.save(tmp_path / "m.npz")
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(workdir / "X.npy"), "--out",
                     str(tmp_path / "out.zarr"), "--proba", "--score", "--scheduler", "threads", "-q"]) == 0
    written = xr.open_zarr(tmp_path / "out.zarr")
    for name in ("label", "probability", "log_likelihood"):
        assert written[name].attrs == dxr.OUTPUT_ATTRS[name], name
    assert written.label.attrs["missing_label"] == -1 and written.label.dtype == np.int64
    assert written.probability.dims == ("sample", "component")
    np.testing.assert_array_equal(written.component.values, [0, 1])
    np.testing.assert_array_equal(written.probability.values, model.predict_proba(two_blobs()))


def test_dataset_variables_as_features_from_the_command_line(tmp_path, capsys):
    ds = small_cube().to_dataset(dim="band")
    ds.to_netcdf(tmp_path / "bands.nc")
    argv = ["fit", str(tmp_path / "bands.nc"), "-k", "3", "--variable", "nir,red", "--random-state", "0",
            "--scheduler", "threads", "-q"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "with 2 features" in out
    _, meta = read_archive(tmp_path / "bands.daskgmm.npz")
    assert meta["input"]["variables"] == ["nir", "red"]
    assert meta["input"]["features"] == ["nir", "red"]
    assert cli.main(["predict", str(tmp_path / "bands.daskgmm.npz"), str(tmp_path / "bands.nc"),
                     "--scheduler", "threads", "-q"]) == 0
    with xr.open_dataset(tmp_path / "bands.labels.nc") as written:
        model = daskgmm.load(tmp_path / "bands.daskgmm.npz")
        expected = dxr.predict(model, ds, variables=["nir", "red"])
        np.testing.assert_array_equal(written.label.values, expected.values)


def test_component_table_for_every_covariance_type():
    X = two_blobs(400)
    for kind in ("full", "tied", "diag", "spherical"):
        model = GaussianMixture(2, covariance_type=kind, random_state=0).fit(X)
        stds = cli.component_stds(model.covariances_, kind, 2, 2)
        assert stds.shape == (2, 2)
        if kind == "full":
            np.testing.assert_allclose(stds**2, np.diagonal(model.covariances_, axis1=1, axis2=2))
        lines = cli.component_table(model.weights_, model.means_, model.covariances_, kind)
        assert len(lines) == 3  # a header and a row per component


def test_default_paths():
    assert cli.default_model_path("data/X.npy") == os.path.join("data", "X.daskgmm.npz")
    assert cli.default_model_path("data/cube.zarr/") == os.path.join("data", "cube.daskgmm.npz")
    assert cli.input_format("a.npy") == "npy" and cli.input_format("a.nc") == "netcdf"
    assert cli.input_format("a.zarr") == "zarr"


def test_demo_without_matplotlib_skips_the_plot_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--n-samples", "600", "--scheduler", "threads", "-q"]) == 0
    out = capsys.readouterr().out
    assert "note: matplotlib is not installed, no plot written" in out
    assert "largest error on a mean coordinate" in out
    assert not (tmp_path / "daskgmm-demo.png").exists()


def test_progress_without_tqdm_prints_one_line_per_iteration(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    progress = cli.Progress(10, out=sys.stderr)
    model = GaussianMixture(2, random_state=0, max_iter=5, tol=0)
    with pytest.warns(UserWarning, match="did not converge"):
        model._fit(two_blobs(400), callbacks=[progress])
    progress.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("iteration    1  log-likelihood ")
    assert f"{model.lower_bounds_[-1]: .8f}" in lines[-1] and "change" in lines[-1]
    quiet = cli.Progress(10, enabled=False)
    quiet({"iteration": 1})  # disabled: does nothing, needs nothing
    assert capsys.readouterr().err == ""


def test_fit_on_a_running_scheduler(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    np.save(tmp_path / "X.npy", two_blobs(600))
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        argv = ["fit", str(tmp_path / "X.npy"), "-k", "2", "--random-state", "0", "--scheduler",
                cluster.scheduler_address]
        assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert f"Dask scheduler: {cluster.scheduler_address} (1 workers)" in captured.err
    model = daskgmm.load(tmp_path / "X.daskgmm.npz")
    np.testing.assert_allclose(model.means_, GaussianMixture(2, random_state=0).fit(two_blobs(600)).means_, rtol=1e-8)


def test_fit_checkpoint_resumes_and_refuses_other_settings(workdir, tmp_path, capsys):
    checkpoint = tmp_path / "run.ckpt.npz"
    base = ["fit", str(workdir / "X.npy"), "--scheduler", "threads", "-q", "--random-state", "0",
            "--checkpoint", str(checkpoint), "--tol", "0", "--max-iter", "4"]
    assert cli.main(base + ["-k", "2", "--out", str(tmp_path / "a.npz")]) == 0
    assert checkpoint.exists()
    first = daskgmm.load(tmp_path / "a.npz")
    assert first.n_iter_ == 4
    # Resuming with a larger max_iter continues from iteration 4.
    assert cli.main(base[:-2] + ["--max-iter", "6", "-k", "2", "--out", str(tmp_path / "b.npz")]) == 0
    resumed = daskgmm.load(tmp_path / "b.npz")
    straight_args = ["fit", str(workdir / "X.npy"), "--scheduler", "threads", "-q", "--random-state", "0",
                     "--tol", "0", "--max-iter", "6", "-k", "2", "--out", str(tmp_path / "c.npz")]
    assert cli.main(straight_args) == 0
    straight = daskgmm.load(tmp_path / "c.npz")
    assert resumed.n_iter_ == 6
    np.testing.assert_allclose(resumed.means_, straight.means_, rtol=1e-10)
    capsys.readouterr()
    # Other settings: one clear line, the checkpoint left as it was.
    before = checkpoint.read_bytes()
    assert cli.main(base + ["-k", "3", "--out", str(tmp_path / "d.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("daskgmm: error:") and "n_components" in err[0]
    assert checkpoint.read_bytes() == before


# --------------------------------------------------------------------------
# Outputs never destroy what the user has (issue #15, items 3 and 7)
# --------------------------------------------------------------------------


def tree_bytes(path):
    """Content of a file, or of every file under a folder, for comparison."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if ".daskgmm-" in p.name)


@pytest.fixture()
def cube_copies(workdir, tmp_path):
    shutil.copytree(workdir / "cube.zarr", tmp_path / "cube.zarr")
    shutil.copy(workdir / "cube.nc", tmp_path / "cube.nc")
    model = dxr.fit(GaussianMixture(3, random_state=0, covariance_type="diag"), small_cube(), "band")
    model.save(tmp_path / "m.npz")
    return tmp_path


@pytest.mark.parametrize("name", ["cube.zarr", "cube.nc"])
def test_predict_refuses_to_write_over_or_into_its_input(cube_copies, capsys, name):
    source = cube_copies / name
    before = tree_bytes(source)
    common = ["--feature-dim", "band", "--scheduler", "threads", "-q", "--overwrite"]
    for out in (source, cube_copies / "." / name, source / "labels.zarr"):
        message = error_of(capsys, ["predict", str(cube_copies / "m.npz"), str(source), "-o", str(out), *common])
        assert message.startswith(f"the output {out} would replace or lie inside the input {source}")
    assert tree_bytes(source) == before
    assert leftovers(cube_copies) == []


@pytest.mark.parametrize("name", ["labels.zarr", "labels.nc", "labels.npy"])
def test_an_interrupted_predict_keeps_the_previous_output(cube_copies, capsys, monkeypatch, name):
    """Ctrl-C while an output is computed with --overwrite: the previous
    output is still there, whole, and no temporary file remains."""
    import dask

    out = cube_copies / name
    argv = ["predict", str(cube_copies / "m.npz"), str(cube_copies / "cube.zarr"), "-o", str(out),
            "--feature-dim", "band", "--scheduler", "threads", "-q"]
    if name == "labels.npy":
        argv = ["predict", str(cube_copies / "m.npz"), str(cube_copies / "X.npy"), "-o", str(out),
                "--scheduler", "threads", "-q"]
        GaussianMixture(2, random_state=0).fit(two_blobs(200)).save(cube_copies / "m.npz", overwrite=True)
        np.save(cube_copies / "X.npy", two_blobs(200))
    assert cli.main(argv) == 0
    before = tree_bytes(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dask, "compute", interrupted)
    assert cli.main(argv + ["--overwrite"]) == 130
    assert "daskgmm: interrupted" in capsys.readouterr().err
    assert tree_bytes(out) == before
    assert leftovers(cube_copies) == []
    monkeypatch.undo()
    assert cli.main(argv) == 1  # exists, no --overwrite
    assert cli.main(argv + ["--overwrite"]) == 0
    assert leftovers(cube_copies) == []


def test_predict_overwrites_a_zarr_output_when_told(cube_copies, capsys):
    """Only a store predict wrote is replaced (issue #20, item 2; other
    folders: tests/test_files.py)."""
    out = cube_copies / "labels.zarr"
    argv = ["predict", str(cube_copies / "m.npz"), str(cube_copies / "cube.nc"), "-o", str(out),
            "--feature-dim", "band", "--scheduler", "threads", "-q"]
    assert cli.main(argv) == 0
    (out / "old-file").write_text("old")
    assert "already exists; pass --overwrite" in error_of(capsys, argv)
    assert (out / "old-file").read_text() == "old"
    assert cli.main(argv + ["--overwrite"]) == 0
    assert not (out / "old-file").exists()
    assert xr.open_zarr(out).label.dims == ("time", "y", "x")
    assert leftovers(cube_copies) == []


def test_fit_refuses_an_output_or_checkpoint_over_its_input(workdir, tmp_path, capsys):
    np.save(tmp_path / "X.npy", two_blobs(300))
    before = (tmp_path / "X.npy").read_bytes()
    common = ["-k", "2", "--scheduler", "threads", "-q", "--overwrite"]
    message = error_of(capsys, ["fit", str(tmp_path / "X.npy"), "-o", str(tmp_path / "X.npy"), *common])
    assert message.startswith(f"the output {tmp_path / 'X.npy'} would replace or lie inside the input")
    message = error_of(capsys, ["fit", str(tmp_path / "X.npy"), "--checkpoint", str(tmp_path / "X.npy"), *common])
    assert "the checkpoint" in message and "would replace or lie inside the input" in message
    message = error_of(capsys, ["fit", str(tmp_path / "X.npy"), "-o", str(tmp_path / "c.npz"),
                                "--checkpoint", str(tmp_path / "c.npz"), *common])
    assert "would replace or lie inside the checkpoint" in message
    assert (tmp_path / "X.npy").read_bytes() == before


def test_demo_refuses_to_overwrite_an_existing_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "demo.png"
    plot.write_bytes(b"my own picture")
    argv = ["demo", "--n-samples", "600", "--scheduler", "threads", "-q", "--plot", str(plot)]
    assert error_of(capsys, argv) == f"{plot} already exists; pass --overwrite to replace it."
    assert plot.read_bytes() == b"my own picture"
    assert cli.main(argv + ["--overwrite"]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert leftovers(tmp_path) == []


def test_fit_writes_a_plot_after_the_model(workdir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, picture = tmp_path / "m.npz", tmp_path / "fit.png"
    assert cli.main(fit_args(workdir / "X.npy", out, "--plot", picture)) == 0
    printed = capsys.readouterr().out
    assert printed.index("saved model to") < printed.index(f"plot written to {picture}")
    content = picture.read_bytes()
    assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) > 10_000
    assert daskgmm.load(out).n_components == 2
    assert leftovers(tmp_path) == []


def test_fit_plot_shows_the_components_over_the_data_and_the_convergence(workdir):
    pytest.importorskip("matplotlib")
    from matplotlib.patches import Ellipse

    source = cli.open_input(workdir / "X.npy")
    model = GaussianMixture(2, random_state=0).fit(source.X)
    fig = cli.fit_figure(model, source, 1.0)
    left, right = fig.axes
    ellipses = [patch for patch in left.patches if isinstance(patch, Ellipse)]
    np.testing.assert_allclose([e.center for e in ellipses], model.means_)  # two features: as they are
    assert len(left.collections[0].get_offsets()) == 2000  # every row (under 5000)
    np.testing.assert_array_equal(right.get_lines()[0].get_ydata(), model.lower_bounds_)

    # Labelled input, 3 bands: the principal axes; the masked samples are not drawn.
    source = cli.open_input(workdir / "cube.zarr", variables=["reflectance"], feature_dim="band")
    model = dxr.fit(GaussianMixture(3, random_state=0), source.data, "band")
    left, right = cli.fit_figure(model, source, 1.0).axes
    assert left.get_xlabel().startswith("PC1 (")
    assert len([p for p in left.patches if isinstance(p, Ellipse)]) == 3
    n_complete = int(np.isfinite(small_cube()).all("band").sum())
    assert len(left.collections[0].get_offsets()) == n_complete


def test_fit_plot_refusals_come_before_computing(workdir, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    out, picture = tmp_path / "m.npz", tmp_path / "fit.png"
    picture.write_bytes(b"my own picture")
    message = error_of(capsys, fit_args(workdir / "X.npy", out, "--plot", picture))
    assert message == f"{picture} already exists; pass --overwrite to replace it."
    message = error_of(capsys, fit_args(workdir / "X.npy", out, "--plot", out))
    assert message == f"the output {out} would replace or lie inside the model {out}; write it to another path."
    message = error_of(capsys, ["fit", str(workdir / "X.npy"), str(workdir / "X.npy"), "-k", "2", "--online",
                                "--plot", str(tmp_path / "p.png")])
    assert message == "--plot is not supported with --online."
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    message = error_of(capsys, fit_args(workdir / "X.npy", out, "--plot", tmp_path / "new.png"))
    assert message == 'daskgmm.plot needs matplotlib: pip install "daskgmm[plot]"'
    assert not out.exists() and picture.read_bytes() == b"my own picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.png"]


@pytest.mark.parametrize("option", ["--workers", "--threads-per-worker"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_workers_and_threads_must_be_positive(capsys, option, value):
    """``--workers 0`` started a LocalCluster with no worker and waited forever."""
    for command in (["fit", "X.npy", "-k", "2"], ["demo"], ["predict", "m.npz", "X.npy"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*command, option, value])
        assert exit_info.value.code == 2
        assert f"argument {option}: must be a positive integer, got {value}" in capsys.readouterr().err


def test_an_invalid_model_file_is_one_error_line(tmp_path, capsys):
    GaussianMixture(2, random_state=0).fit(two_blobs(300)).save(tmp_path / "m.npz")
    arrays, meta = read_archive(tmp_path / "m.npz")
    from daskgmm.io import write_archive

    write_archive(tmp_path / "bad.npz", dict(arrays, weights=arrays["weights"] * 3), meta)
    assert "'weights' sums to 3, not 1" in error_of(capsys, ["info", str(tmp_path / "bad.npz")])
    (tmp_path / "deep.npz").write_bytes(b"")
    np.savez(tmp_path / "deep.npz", __daskgmm__=np.array("[" * 100_000), **arrays)
    assert "not a readable daskgmm file" in error_of(capsys, ["info", str(tmp_path / "deep.npz")])


# --------------------------------------------------------------------------
# --sample-weight (issue #13)
# --------------------------------------------------------------------------


def fit_args(path, out, *extra):
    return ["fit", str(path), "-k", "2", "--random-state", "0", "--scheduler", "threads", "-q",
            "--out", str(out), *map(str, extra)]


def test_npy_weights_of_one_are_no_weights(workdir, tmp_path):
    np.save(tmp_path / "ones.npy", np.ones(2000))
    # k-means++: its weighted draws are its unweighted ones when every weight is 1.
    init = ["--init-params", "k-means++", "--tol", "1e-6"]
    assert cli.main(fit_args(workdir / "X.npy", tmp_path / "plain.npz", *init)) == 0
    assert cli.main(fit_args(workdir / "X.npy", tmp_path / "ones.npz", *init, "--sample-weight", tmp_path / "ones.npy")) == 0
    plain, ones = daskgmm.load(tmp_path / "plain.npz"), daskgmm.load(tmp_path / "ones.npz")
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(ones, name), getattr(plain, name), err_msg=name)
    assert ones.n_iter_ == plain.n_iter_ and ones.lower_bound_ == plain.lower_bound_
    _, meta = read_archive(tmp_path / "ones.npz")
    assert meta["input"]["sample_weight"] == {"source": str(tmp_path / "ones.npy"), "format": "npy"}
    _, meta = read_archive(tmp_path / "plain.npz")
    assert "sample_weight" not in meta["input"]  # an unweighted fit's record is as before


def test_npy_weights_of_zero_leave_rows_out(workdir, tmp_path, capsys):
    X = two_blobs()
    weights = np.zeros(len(X))
    weights[1::2] = 1  # every other row: half of each blob
    np.save(tmp_path / "half.npy", weights.astype(np.float32))
    assert cli.main(fit_args(workdir / "X.npy", tmp_path / "w.npz", "--sample-weight", tmp_path / "half.npy")) == 0
    assert "samples weighted by" in capsys.readouterr().out
    weighted = daskgmm.load(tmp_path / "w.npz")
    half = GaussianMixture(2, random_state=0).fit(X[1::2])
    order, half_order = np.argsort(weighted.means_[:, 0]), np.argsort(half.means_[:, 0])
    # The draws are keyed by global row index: the same rows, other starts.
    np.testing.assert_allclose(weighted.means_[order], half.means_[half_order], atol=0.05)
    np.testing.assert_allclose(weighted.weights_[order], half.weights_[half_order], atol=0.02)
    assert cli.main(["info", str(tmp_path / "w.npz")]) == 0
    assert f"weighted by {tmp_path / 'half.npy'}" in capsys.readouterr().out


@pytest.fixture()
def weighted_store(tmp_path):
    """A zarr store holding the cube and a (y, x) weight map."""
    cube = small_cube()
    weight = xr.DataArray(
        np.random.default_rng(2).integers(0, 3, size=(10, 12)).astype(np.float32), dims=("y", "x"),
        coords={"y": cube.y, "x": cube.x},
    )
    ds = cube.to_dataset().assign(pixel_weight=weight)
    ds.chunk({"time": 1, "y": 5, "x": 6}).to_zarr(tmp_path / "weighted.zarr")
    return tmp_path / "weighted.zarr", cube, weight


def test_labelled_weights_from_a_variable_of_the_store(weighted_store, tmp_path):
    store, cube, weight = weighted_store
    out = tmp_path / "m.npz"
    assert cli.main(fit_args(store, out, "-k", "3", "--variable", "reflectance", "--feature-dim", "band",
                             "--sample-weight", "pixel_weight", "--covariance-type", "diag")) == 0
    model = daskgmm.load(out)
    with xr.open_zarr(store) as ds:
        reference = dxr.fit(GaussianMixture(3, covariance_type="diag", random_state=0), ds["reflectance"], "band",
                            sample_weight=ds["pixel_weight"])
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(model, name), getattr(reference, name), rtol=1e-10, atol=1e-12)
    _, meta = read_archive(out)
    assert meta["input"]["sample_weight"] == {"variable": "pixel_weight", "dims": ["y", "x"]}
    assert meta["input"]["features"] == ["red", "nir", "swir"]


def test_labelled_weights_with_variables_as_features(tmp_path):
    cube = small_cube()
    ds = cube.to_dataset(dim="band").assign(w=xr.DataArray(np.arange(1.0, 3.0), dims="time"))
    ds.to_netcdf(tmp_path / "bands.nc")
    assert cli.main(fit_args(tmp_path / "bands.nc", tmp_path / "m.npz", "--variable", "nir,red",
                             "--sample-weight", "w", "--tol", "1e-6")) == 0
    model = daskgmm.load(tmp_path / "m.npz")
    assert list(model.feature_names_in_) == ["nir", "red"]
    with xr.open_dataset(tmp_path / "bands.nc", chunks={}) as opened:
        reference = dxr.fit(GaussianMixture(2, random_state=0, tol=1e-6), opened, variables=["nir", "red"],
                            sample_weight="w")
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-10)


def test_sample_weight_errors(workdir, weighted_store, tmp_path, capsys):
    store, _, _ = weighted_store
    out = tmp_path / "m.npz"
    np.save(tmp_path / "short.npy", np.ones(10))
    message = error_of(capsys, fit_args(workdir / "X.npy", out, "--sample-weight", tmp_path / "short.npy"))
    assert message == (f"--sample-weight {tmp_path / 'short.npy'} holds an array of shape (10,); expected (2000,): "
                       f"one weight per row of {workdir / 'X.npy'}.")
    message = error_of(capsys, fit_args(workdir / "X.npy", out, "--sample-weight", "pixel_weight"))
    assert message == "--sample-weight pixel_weight: for plain input it is a .npy file of one weight per row."
    assert "no such file or directory" in error_of(capsys, fit_args(workdir / "X.npy", out, "--sample-weight",
                                                                     tmp_path / "none.npy"))
    weights = np.ones(2000)
    weights[7] = np.nan
    np.save(tmp_path / "nan.npy", weights)
    message = error_of(capsys, fit_args(workdir / "X.npy", out, "--sample-weight", tmp_path / "nan.npy"))
    assert "sample_weight contains NaN or infinity" in message
    message = error_of(capsys, fit_args(store, out, "--feature-dim", "band", "--sample-weight", "weights.npy"))
    assert message.startswith("--sample-weight weights.npy: for labelled input it names a variable of")
    assert "pixel_weight(y, x)" in message
    assert not out.exists()


@pytest.fixture
def three_parts(tmp_path):
    X = two_blobs(3000, seed=5)
    np.random.default_rng(1).shuffle(X)
    paths = []
    for i, part in enumerate(np.array_split(X, 3)):
        paths.append(tmp_path / f"part{i}.npy")
        np.save(paths[-1], part)
    return X, paths


def test_fit_online_exact_equals_the_fit_of_the_concatenation(three_parts, tmp_path, capsys):
    """Exact online EM (one M-step per pass over the list of inputs) ends on
    the batch fit's optimum; stepwise EM gets close in two epochs."""
    X, paths = three_parts
    common = ["-k", "2", "--random-state", "0", "--scheduler", "threads", "--quiet"]
    assert cli.main(["fit", *map(str, paths), "--online", "--online-mode", "exact", "--tol", "1e-8",
                     "--out", str(tmp_path / "exact.npz"), *common]) == 0
    assert "online over 3 inputs" in capsys.readouterr().out
    assert cli.main(["fit", *map(str, paths), "--online", "--epochs", "2",
                     "--out", str(tmp_path / "step.npz"), *common]) == 0
    batch = GaussianMixture(2, random_state=0, tol=1e-8).fit(X)
    exact, step = daskgmm.load(tmp_path / "exact.npz"), daskgmm.load(tmp_path / "step.npz")
    assert exact.score(X) == pytest.approx(batch.score(X), abs=1e-8)
    assert step.score(X) > batch.score(X) - 1e-3
    _, meta = read_archive(tmp_path / "step.npz")
    assert meta["input"]["online"] == {
        "inputs": [str(p) for p in paths], "mode": "stepwise", "batches": 6, "n_samples_skipped": 0
    }


def test_fit_online_errors(three_parts, tmp_path, capsys):
    _, paths = three_parts
    args = [*map(str, paths[:2]), "-k", "2", "--scheduler", "threads"]
    assert cli.main(["fit", *args]) == 1
    assert "2 inputs given: fit one input, or stream several with --online" in capsys.readouterr().err
    assert cli.main(["fit", *args, "--online", "--checkpoint", str(tmp_path / "c.ckpt")]) == 1
    assert "--checkpoint is not supported with --online" in capsys.readouterr().err


def test_fit_online_over_labelled_stores(tmp_path, capsys):
    """A list of zarr stores streams through daskgmm.xarray.partial_fit:
    features matched by label (the second store's bands are reordered),
    samples with a missing feature dropped, or marginalised."""
    paths = []
    for seed in range(3):
        cube = small_cube(seed)
        if seed == 1:
            cube = cube.isel(band=[2, 0, 1])
        cube.to_dataset(name="refl").to_zarr(tmp_path / f"cube{seed}.zarr")
        paths.append(str(tmp_path / f"cube{seed}.zarr"))
    common = ["-k", "3", "--online", "--variable", "refl", "--feature-dim", "band", "--random-state", "0",
              "--scheduler", "threads", "--quiet", "--epochs", "3"]
    assert cli.main(["fit", *paths, *common, "--out", str(tmp_path / "drop.npz")]) == 0
    out = capsys.readouterr().out
    # Per store and epoch: 2 x 2 x 3 masked pixels, and one with a band missing.
    assert "online over 3 inputs" in out and "skipped 117 samples with a missing (NaN) feature" in out
    assert cli.main(["fit", *paths, *common, "--missing", "marginalize", "--out", str(tmp_path / "m.npz")]) == 0
    assert "skipped 108 samples" in capsys.readouterr().out
    dropped, marginal = daskgmm.load(tmp_path / "drop.npz"), daskgmm.load(tmp_path / "m.npz")
    assert marginal.missing == "marginalize" and list(marginal.feature_names_in_) == ["red", "nir", "swir"]
    truth = np.array([[0.1, 0.4, 0.2], [0.3, 0.1, 0.5], [0.6, 0.6, 0.1]])
    for model in (dropped, marginal):
        order = np.argsort(model.means_[:, 0])
        np.testing.assert_allclose(model.means_[order], truth, atol=0.02)
    # predict with the marginalising model labels the pixel with a band missing.
    assert cli.main(["predict", str(tmp_path / "m.npz"), paths[0], "-o", str(tmp_path / "labels.zarr"),
                     "--scheduler", "threads"]) == 0
    labels = xr.open_zarr(tmp_path / "labels.zarr")["label"].load()
    assert int(labels[1, 5, 5]) >= 0 and int(labels[0, 0, 0]) == -1


# --------------------------------------------------------------------------
# float32 models; the saved input record (issue #20, items 1 and 11)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_fit_then_predict_float32_correlated_bands(tmp_path, capsys, kind):
    """``daskgmm predict`` refused the model ``daskgmm fit`` had just saved
    from float32 bands correlated by 0.99 ('covariances' is not the
    inverse of the precisions)."""
    X = correlated_bands(0.99)
    np.save(tmp_path / "bands.npy", X)
    threads = ["--scheduler", "threads", "-q"]
    assert cli.main(["fit", str(tmp_path / "bands.npy"), "-k", "2", "--covariance-type", kind, "--random-state", "0",
                     "--out", str(tmp_path / "m.npz"), *threads]) == 0
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "bands.npy"),
                     "--out", str(tmp_path / "labels.npy"), *threads]) == 0
    assert cli.main(["info", str(tmp_path / "m.npz")]) == 0
    model = daskgmm.load(tmp_path / "m.npz")
    assert model.means_.dtype == np.float32
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), model.predict(X))


def _model_with_input_record(tmp_path, field=None, value=None):
    """A saved model whose ``input`` record has every entry ``daskgmm fit``
    may write, ``field`` (dotted) set to ``value``; X.npy its data."""
    from daskgmm.io import save_model

    X = two_blobs(400)
    np.save(tmp_path / "X.npy", X)
    record = {"source": "X.npy", "format": "npy", "labelled": False, "feature_dim": None, "variables": None,
              "sample_dims": None, "features": None, "n_samples_skipped": 0,
              "sample_weight": {"source": "w.npy", "format": "npy", "variable": None, "dims": None},
              "online": {"inputs": ["X.npy"], "mode": "stepwise", "batches": 1, "n_samples_skipped": 0}}
    extra = {"input": record}
    if field is not None:
        *parents, last = field.split(".")
        holder = extra
        for parent in parents:
            holder = holder[parent]
        holder[last] = value
    save_model(GaussianMixture(2, random_state=0).fit(X), tmp_path / "m.npz", extra=extra)
    return tmp_path / "m.npz"


def test_a_complete_input_record_is_read(tmp_path, capsys):
    path = _model_with_input_record(tmp_path)
    assert cli.main(["info", str(path)]) == 0
    assert "input: X.npy (npy), weighted by w.npy" in capsys.readouterr().out
    assert cli.main(["predict", str(path), str(tmp_path / "X.npy"), "--out", str(tmp_path / "labels.npy"),
                     "--scheduler", "threads", "-q"]) == 0


@pytest.mark.parametrize(
    "field, value",
    [
        ("input", 5),
        ("input", ["X.npy"]),
        ("input.variables", 5),
        ("input.variables", [1, 2]),
        ("input.sample_dims", "time"),
        ("input.features", {"a": 1}),
        ("input.feature_dim", 3),
        ("input.source", 7),
        ("input.format", ["npy"]),
        ("input.labelled", "yes"),
        ("input.n_samples_skipped", -1),
        ("input.n_samples_skipped", "none"),
        ("input.sample_weight", 1.5),
        ("input.sample_weight.variable", 2),
        ("input.sample_weight.dims", "time"),
        ("input.online", []),
        ("input.online.inputs", "a.npy"),
        ("input.online.batches", 1.5),
    ],
)
def test_a_malformed_input_record_is_one_error_line(tmp_path, capsys, field, value):
    """``info`` and ``predict`` read the ``input`` record ``daskgmm fit``
    writes: a malformed one raised TypeError or AttributeError (a
    traceback); it is one error line naming the entry."""
    path = _model_with_input_record(tmp_path, field, value)
    entry = re.escape(f"'{field}' is ")
    assert re.search(entry, error_of(capsys, ["info", str(path)]))
    message = error_of(capsys, ["predict", str(tmp_path / "m.npz"), str(tmp_path / "X.npy"),
                                "--out", str(tmp_path / "labels.npy"), "--scheduler", "threads", "-q"])
    assert re.search(entry, message)
    assert message.startswith(str(tmp_path / "m.npz"))
    assert not (tmp_path / "labels.npy").exists()


# One line on stderr for every user error (issue #20, item 12)
# --------------------------------------------------------------------------


def test_online_exact_with_no_pass_is_one_error_line(workdir, tmp_path, capsys):
    """Zero passes read no input and fit nothing: refused before any work."""
    out = tmp_path / "m.npz"
    argv = ["fit", str(workdir / "X.npy"), "--online", "--online-mode", "exact", "--max-iter", "0", "-k", "2",
            "-o", str(out), "--scheduler", "threads", "-q"]
    assert error_of(capsys, argv) == (
        "--max-iter must be >= 1 with --online-mode exact (each pass over the inputs is one EM iteration), got 0."
    )
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "verbose"])
def test_a_data_error_on_a_local_cluster_is_one_line(tmp_path, quiet):
    """NaN without --missing raises on a worker: the error is one line, not
    also the worker's "Compute Failed" log with its traceback."""
    X = two_blobs(400)
    X[5, 1] = np.nan
    np.save(tmp_path / "nan.npy", X)
    result = run_cli("fit", "nan.npy", "-k", "2", "--workers", "1", "--threads-per-worker", "1",
                     *(["-q"] if quiet else []), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Compute Failed" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    if quiet:
        assert len(lines) == 1, result.stderr
    else:  # the progress lines printed before the error, then the error
        assert len(lines) == 3, result.stderr
        assert lines[0].startswith("Dask LocalCluster: 1 workers, 1 threads")
        assert lines[1] == "initialising 2 components (kmeans) ..."
    assert lines[-1].startswith("daskgmm: error: Input X contains NaN or infinity: 1 row(s)")
    assert "(first at row 5)" in lines[-1]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.npy"]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("whom", ["process group", "process"])
def test_ctrl_c_during_a_fit_on_a_local_cluster(tmp_path, whom):
    """SIGINT once the fit iterates (its checkpoint exists): to the process
    group, as a terminal's Ctrl-C sends it (the workers too), or to the
    command alone.  Exit 130, one line on stderr, no model written, no
    temporary file, the checkpoint whole."""
    import signal
    import time

    np.save(tmp_path / "X.npy", two_blobs(4000))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    child = subprocess.Popen(
        [sys.executable, "-m", "daskgmm.cli", "fit", "X.npy", "-k", "2", "--workers", "1", "--threads-per-worker",
         "1", "-q", "--max-iter", "100000", "--tol", "0", "--checkpoint", "ckpt.npz", "-o", "m.npz"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ckpt.npz").exists():
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.05)
        if whom == "process group":
            os.killpg(child.pid, signal.SIGINT)
        else:
            child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130, err
    assert err.strip() == "daskgmm: interrupted" and "\n" not in err.strip(), err
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.npy", "ckpt.npz"]
    assert read_archive(tmp_path / "ckpt.npz", metadata_only=True)[1]["kind"] == "checkpoint"


# --------------------------------------------------------------------------
# Logs and progress as on a cluster (#22)
# --------------------------------------------------------------------------


def cli_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_a_log_file_gets_one_line_per_iteration_and_no_carriage_return(tmp_path):
    """stderr a pipe, as in a batch job's log: no bar (tqdm is installed, and
    drew one there before), one line per EM iteration."""
    pytest.importorskip("tqdm")
    np.save(tmp_path / "X.npy", two_blobs(600))
    result = subprocess.run(
        [sys.executable, "-m", "daskgmm.cli", "fit", "X.npy", "-k", "2", "--random-state", "0", "--tol", "0",
         "--max-iter", "6", "--scheduler", "threads"],
        cwd=tmp_path, env=cli_env(), capture_output=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert b"\r" not in result.stderr
    lines = result.stderr.decode().splitlines()
    iterations = [line for line in lines if line.startswith("iteration ")]
    assert [int(line.split()[1]) for line in iterations] == [1, 2, 3, 4, 5, 6]
    assert lines == [
        "Dask scheduler: threads (no cluster)", "initialising 2 components (kmeans) ...", *iterations,
        "daskgmm: warning: Best performing initialization did not converge. Try different init parameters, "
        "or increase max_iter, tol, or check for degenerate data.",
    ]
    model = daskgmm.load(tmp_path / "X.daskgmm.npz")
    assert f"{model.lower_bound_: .8f}" in iterations[-1]
    assert "change" not in iterations[0] and "change" in iterations[1]


def test_a_terminal_gets_the_progress_bar_and_the_same_lines(tmp_path):
    import fcntl
    import pty
    import struct
    import termios
    import threading

    pytest.importorskip("tqdm")
    np.save(tmp_path / "X.npy", two_blobs(600))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    received = []

    def drain():  # a full pty buffer would block the command
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        child = subprocess.run(
            [sys.executable, "-m", "daskgmm.cli", "fit", "X.npy", "-k", "2", "--random-state", "0", "--tol", "0",
             "--max-iter", "6", "--scheduler", "threads"],
            cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=slave, timeout=120,
        )
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    assert child.returncode == 0
    err = b"".join(received).decode()
    assert "\rEM: 100%|" in err and "| 6/6 [" in err  # tqdm's bar, redrawn in place
    for iteration in range(1, 7):
        assert f"iteration {iteration:4d}  log-likelihood " in err


def test_python_m_daskgmm_runs_the_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "daskgmm", "--help"], cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: daskgmm [-h] [--version] COMMAND ...")
    result = subprocess.run([sys.executable, "-m", "daskgmm", "info", "nope.npz"], cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr == "daskgmm: error: No such file: nope.npz\n"


def test_the_all_extra_installs_what_the_dashboard_needs():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def resolve(name):
        for requirement in extras[name]:
            match = re.fullmatch(r"daskgmm\[(.*)\]", requirement)
            if match:
                for inner in match.group(1).split(","):
                    yield from resolve(inner.strip())
            else:
                yield requirement

    # distributed.dashboard.core.BOKEH_REQUIREMENT: the dashboard's own need.
    assert "bokeh>=3.1.0" in set(resolve("all"))


def test_error_lines_name_the_file_once(tmp_path, capsys):
    missing = tmp_path / "nope.npz"
    assert error_of(capsys, ["info", str(missing)]) == f"No such file: {missing}"
    assert cli._error_message(PermissionError(13, "Permission denied", "a")) == "Permission denied: a"
    assert cli._error_message(OSError(18, "Invalid cross-device link", "a", None, "b")) == "Invalid cross-device link: a -> b"


def test_a_model_file_written_meanwhile_is_kept_with_one_error_line(workdir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "model.npz"
    fit = cli._fit_with_progress

    def fit_while_another_process_writes(*args, **kwargs):
        seconds = fit(*args, **kwargs)
        out.write_bytes(b"written by someone else")
        return seconds

    monkeypatch.setattr(cli, "_fit_with_progress", fit_while_another_process_writes)
    message = error_of(capsys, ["fit", str(workdir / "X.npy"), "-k", "2", "--out", str(out), "--scheduler",
                                "threads", "-q"])
    assert message == f"{out} already exists; pass --overwrite to replace it."
    assert out.read_bytes() == b"written by someone else"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_a_plot_written_meanwhile_is_kept_with_one_error_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "demo.png"
    fit = cli._fit_with_progress

    def fit_while_another_process_writes(*args, **kwargs):
        seconds = fit(*args, **kwargs)
        plot.write_bytes(b"written by someone else")
        return seconds

    monkeypatch.setattr(cli, "_fit_with_progress", fit_while_another_process_writes)
    assert cli.main(["demo", "--n-samples", "600", "--scheduler", "threads", "-q", "--plot", str(plot)]) == 1
    assert capsys.readouterr().err == f"daskgmm: error: {plot} already exists; pass --overwrite to replace it.\n"
    assert plot.read_bytes() == b"written by someone else"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.png"]


def test_a_bad_memory_limit_names_its_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", "X.npy", "-k", "2", "--memory-limit", "4 gigs"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "daskgmm fit: error: argument --memory-limit: expected a size such as 4GB or 4e9 bytes, a fraction of the "
        "memory such as 0.5, 0 for no limit, or 'auto'; got '4 gigs'"
    )
    with pytest.raises(SystemExit):
        cli.main(["fit", "X.npy", "-k", "2", "--memory-limit=-1GB"])
    assert "argument --memory-limit: expected a size" in capsys.readouterr().err
    parser = cli.build_parser()
    for value in ("4GB", "4e9", "0.5", "0", "auto", "512 MiB"):
        assert parser.parse_args(["fit", "X.npy", "-k", "2", "--memory-limit", value]).memory_limit == value


def test_help_says_no_issue_numbers(capsys):
    texts = []
    for command in ([], ["fit"], ["predict"], ["info"], ["demo"]):
        with pytest.raises(SystemExit):
            cli.main([*command, "--help"])
        texts.append(capsys.readouterr().out)
    assert "online EM: inputs that arrive in pieces:" in texts[1]
    assert not any(re.search(r"#\d", text) for text in texts), [t for t in texts if re.search(r"#\d", t)]


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_file_errors_are_one_line(tmp_path, capsys):
    np.save(tmp_path / "X.npy", two_blobs(100))
    fit = ["fit", str(tmp_path / "X.npy"), "-k", "2", "-q"]
    missing = tmp_path / "scheduler.json"
    message = error_of(capsys, [*fit, "--scheduler-file", str(missing), "--connect-timeout", "0.5"])
    assert message == (
        f"no scheduler file {missing} (waited 0.5 s for a Dask scheduler to write it; --connect-timeout sets the wait)"
    )
    missing.write_text("{not json")
    assert error_of(capsys, [*fit, "--scheduler-file", str(missing), "--connect-timeout", "0.5"]) == (
        f"{missing} is not a Dask scheduler file: it holds no JSON object with an 'address'."
    )
    assert error_of(capsys, [*fit, "--scheduler-file", str(tmp_path)]) == (
        f"the scheduler file {tmp_path} is not a regular file."
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*fit, "--scheduler-file", str(missing), "--scheduler", "tcp://127.0.0.1:8786"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "daskgmm fit: error: argument --scheduler: not allowed with argument --scheduler-file"
    )
    with pytest.raises(SystemExit):
        cli.main([*fit, "--connect-timeout", "0"])
    assert "argument --connect-timeout: must be a number > 0, got 0" in capsys.readouterr().err
    assert not (tmp_path / "X.daskgmm.npz").exists()


def test_an_unreachable_scheduler_is_one_line_within_the_connect_timeout(tmp_path, capsys):
    import time

    np.save(tmp_path / "X.npy", two_blobs(100))
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text(json.dumps({"type": "Scheduler", "id": "Scheduler-0", "address": address}))
    fit = ["fit", str(tmp_path / "X.npy"), "-k", "2", "-q", "--connect-timeout", "2"]
    tic = time.perf_counter()
    message = error_of(capsys, [*fit, "--scheduler-file", str(scheduler_file)])
    assert time.perf_counter() - tic < 10
    assert message == (
        f"cannot connect to the Dask scheduler {address} from {scheduler_file}: "
        f"Timed out trying to connect to {address} after 2 s"
    )
    message = error_of(capsys, [*fit, "--scheduler", address])
    assert message == f"cannot connect to the Dask scheduler {address}: Timed out trying to connect to {address} after 2 s"
    assert not (tmp_path / "X.daskgmm.npz").exists()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_fit_on_a_scheduler_started_from_a_scheduler_file(tmp_path):
    """``dask scheduler --scheduler-file`` and one ``dask worker`` on the
    loopback interface, as a batch script starts them; the command waits for
    the file and fits there."""
    import time

    np.save(tmp_path / "X.npy", two_blobs(600))
    scheduler_file = tmp_path / "scheduler.json"
    dask_cli = [sys.executable, "-m", "dask"]
    common = ["--scheduler-file", str(scheduler_file), "--no-dashboard"]
    started = []
    try:
        started.append(subprocess.Popen(
            [*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", *common],
            cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        started.append(subprocess.Popen(
            [*dask_cli, "worker", "--nthreads", "1", "--host", "127.0.0.1", "--no-nanny", *common],
            cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        tic = time.perf_counter()
        result = run_cli("fit", "X.npy", "-k", "2", "--random-state", "0", "--scheduler-file", scheduler_file,
                         "--connect-timeout", "30", cwd=tmp_path, timeout=60)
        seconds = time.perf_counter() - tic
        address = json.loads(scheduler_file.read_text())["address"]  # removed by the scheduler as it stops
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    check_ok(result)
    assert address.startswith("tcp://127.0.0.1:")
    # The worker may register after the command connects: 0 or 1 workers then.
    assert re.search(rf"^Dask scheduler: {re.escape(address)} from {re.escape(str(scheduler_file))} \([01] workers\)$",
                     result.stderr, re.MULTILINE), result.stderr
    assert seconds < 40
    model = daskgmm.load(tmp_path / "X.daskgmm.npz")
    reference = GaussianMixture(2, random_state=0).fit(two_blobs(600))
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-8, atol=1e-10)
    assert model.n_iter_ == reference.n_iter_


def test_fit_m_step_options_reach_the_estimator(workdir, tmp_path, capsys):
    """--m-step-max-iter and --m-step-tol are the estimator's
    m_step_max_iter and m_step_tol (saved with the model); inner iterations
    stopped at the limit are one warning line; bad values exit with 2."""
    threads = ["--scheduler", "threads", "-q"]
    out = tmp_path / "eve.npz"
    assert cli.main(["fit", str(workdir / "X.npy"), "-k", "2", "--covariance-type", "EVE", "--random-state", "0",
                     "--m-step-max-iter", "1", "--m-step-tol", "1e-5", "--out", str(out), *threads]) == 0
    model = daskgmm.load(out)
    assert (model.m_step_max_iter, model.m_step_tol) == (1, 1e-5)
    expected = GaussianMixture(2, covariance_type="EVE", random_state=0, m_step_max_iter=1, m_step_tol=1e-5)
    with pytest.warns(ConvergenceWarning, match="reached m_step_max_iter=1 without meeting m_step_tol=1e-05"):
        expected.fit(np.load(workdir / "X.npy"))
    np.testing.assert_allclose(model.covariances_, expected.covariances_, rtol=1e-10)
    warning_lines = [line for line in capsys.readouterr().err.splitlines() if "m_step_max_iter" in line]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("daskgmm: warning: The inner iterations of ")
    assert "EVE M-steps reached m_step_max_iter=1" in warning_lines[0]
    assert cli.main(["fit", str(workdir / "X.npy"), "-k", "2", "--covariance-type", "EVE", "--random-state", "0",
                     "--out", str(tmp_path / "default.npz"), *threads]) == 0
    default = daskgmm.load(tmp_path / "default.npz")
    assert (default.m_step_max_iter, default.m_step_tol) == (1000, 1.5e-8)
    assert "m_step_max_iter" not in capsys.readouterr().err
    for option, value, message in [
        ("--m-step-max-iter", "0", "must be a positive integer, got 0"),
        ("--m-step-tol", "-1", "must be a number >= 0, got -1"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["fit", str(workdir / "X.npy"), "-k", "2", option, value, *threads])
        assert exit_info.value.code == 2
        assert f"argument {option}: {message}" in capsys.readouterr().err
