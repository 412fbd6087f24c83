"""Saved models (daskgmm.io): exact round trip, safe writes, clear errors on
bad files, and no code execution on load."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import daskgmm
from daskgmm import GaussianMixture, NotFittedError
from daskgmm.io import (
    FORMAT,
    FORMAT_VERSION,
    RECORD_FIELDS,
    _host_tag,
    publish,
    read_archive,
    save_model,
    temporary_path,
    write_archive,
)

from .conftest import correlated_bands


def _data(seed=0, n=400):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [0.0, 6.0, 6.0]])
    labels = rng.integers(3, size=n)
    return centres[labels] + rng.normal(size=(n, 3)) * np.array([1.0, 0.5, 1.5])


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module", params=["full", "tied", "diag", "spherical"])
def fitted(request, data):
    gmm = GaussianMixture(3, covariance_type=request.param, random_state=0, tol=1e-6, reg_covar=1e-5)
    return gmm.fit(data)


def test_round_trip_is_exact(fitted, data, tmp_path):
    path = tmp_path / "model.daskgmm.npz"
    assert fitted.save(path) == os.fspath(path)
    loaded = daskgmm.load(path)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fitted, name), err_msg=name)
        assert getattr(loaded, name).dtype == np.float64
    assert loaded.get_params() == fitted.get_params()
    assert loaded.converged_ == fitted.converged_
    assert loaded.n_iter_ == fitted.n_iter_
    assert loaded.lower_bound_ == fitted.lower_bound_
    assert loaded.lower_bounds_ == fitted.lower_bounds_
    assert loaded.n_features_in_ == 3
    np.testing.assert_array_equal(loaded.predict(data), fitted.predict(data))
    np.testing.assert_array_equal(loaded.predict_proba(data), fitted.predict_proba(data))
    np.testing.assert_array_equal(loaded.score_samples(data), fitted.score_samples(data))


def test_loaded_model_can_be_refitted(fitted, data, tmp_path):
    fitted.save(tmp_path / "m.npz")
    loaded = daskgmm.load(tmp_path / "m.npz")
    loaded.fit(data)
    np.testing.assert_allclose(loaded.means_, fitted.means_, rtol=1e-8, atol=1e-8)


def test_format_is_plain_numpy_with_documented_metadata(fitted, tmp_path):
    path = tmp_path / "m.npz"
    fitted.save(path)
    # Portable: readable with NumPy alone, without pickle.
    with np.load(path, allow_pickle=False) as archive:
        # The parameters, the records of the fit's iterations, and the
        # statistics of the fit's last pass (what a stream of partial_fit
        # continues from).
        assert sorted(archive.files) == sorted(
            ["__daskgmm__", "weights", "means", "covariances", "precisions_cholesky", "fit_history"]
            + [f"fit_statistics_{name}" for name in ("n_samples", "log_likelihood", "nk", "means", "scatter")]
        )
        assert archive["fit_statistics_n_samples"] == 400
        np.testing.assert_array_equal(
            archive["fit_history"], [[r[name] for name in RECORD_FIELDS] for r in fitted.history_]
        )
        meta = json.loads(str(archive["__daskgmm__"][()]))
        np.testing.assert_array_equal(archive["means"], fitted.means_)
    assert meta["format"] == FORMAT == "daskgmm-model"
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert meta["kind"] == "model"
    assert meta["daskgmm_version"] == daskgmm.__version__
    assert meta["covariance_type"] == fitted.covariance_type
    assert (meta["n_components"], meta["n_features"]) == (3, 3)
    assert meta["params"]["random_state"] == 0
    assert meta["fit"]["n_iter"] == fitted.n_iter_
    assert meta["stream"] is None  # no partial_fit yet


def test_non_json_parameters_are_described_not_restored(data, tmp_path):
    gmm = GaussianMixture(2, random_state=np.random.RandomState(3), max_iter=np.int64(50)).fit(data)
    gmm.save(tmp_path / "m.npz")
    _, meta = read_archive(tmp_path / "m.npz")
    assert "RandomState" in meta["params_repr"]["random_state"]
    assert meta["params"]["max_iter"] == 50
    loaded = daskgmm.load(tmp_path / "m.npz")
    assert loaded.random_state is None  # the default, not a string
    np.testing.assert_array_equal(loaded.means_, gmm.means_)


def test_extra_metadata_is_kept_and_cannot_replace_reserved_entries(fitted, tmp_path):
    save_model(fitted, tmp_path / "m.npz", extra={"input": {"feature_dim": "band"}})
    _, meta = read_archive(tmp_path / "m.npz")
    assert meta["input"] == {"feature_dim": "band"}
    with pytest.raises(ValueError, match=r"reserved entries \['format'\]"):
        save_model(fitted, tmp_path / "n.npz", extra={"format": "other"})
    assert not (tmp_path / "n.npz").exists()


def test_overwrite_is_refused_and_keeps_the_old_file(fitted, data, tmp_path):
    path = tmp_path / "m.npz"
    fitted.save(path)
    before = path.read_bytes()
    other = GaussianMixture(2, random_state=1).fit(data)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        other.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temporary file left behind
    other.save(path, overwrite=True)
    assert daskgmm.load(path).n_components == 2
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):  # not JSON-serialisable metadata
        write_archive(tmp_path / "m.npz", {"a": np.zeros(2)}, {"bad": object()})
    assert os.listdir(tmp_path) == []


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GaussianMixture(2).save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file"):
        daskgmm.load(tmp_path / "absent.npz")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.02])
def test_truncated_file_is_a_clear_value_error(fitted, tmp_path, keep):
    path = tmp_path / "m.npz"
    fitted.save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ValueError, match="is not a readable daskgmm file \\(truncated or corrupt\\)"):
        daskgmm.load(path)


def test_random_bytes_are_a_clear_value_error(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not a readable daskgmm file"):
        daskgmm.load(path)


def test_a_directory_is_a_clear_value_error(tmp_path):
    with pytest.raises(ValueError, match="not a readable daskgmm file"):
        daskgmm.load(tmp_path)


def test_foreign_npz_is_refused(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.ones(2), means=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="is not a daskgmm file \\(no daskgmm metadata\\)"):
        daskgmm.load(path)


def test_foreign_format_name_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, __daskgmm__=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(ValueError, match="is not a daskgmm file \\(format 'something-else'\\)"):
        daskgmm.load(path)


def test_non_object_metadata_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, __daskgmm__=np.array(json.dumps([1, 2])))
    with pytest.raises(ValueError, match="metadata is not a JSON object"):
        daskgmm.load(path)


def test_newer_format_version_asks_for_an_upgrade(fitted, tmp_path):
    arrays, meta = _saved(fitted, tmp_path)
    # write_archive always stamps the current version, so write the file by hand.
    newer = json.dumps(dict(meta, format_version=FORMAT_VERSION + 1))
    np.savez(tmp_path / "new.npz", __daskgmm__=np.array(newer), **arrays)
    with pytest.raises(ValueError, match="newer daskgmm \\(format version 2\\); upgrade daskgmm"):
        daskgmm.load(tmp_path / "new.npz")


def _saved(model, tmp_path):
    model.save(tmp_path / "orig.npz", overwrite=True)
    return read_archive(tmp_path / "orig.npz")


def test_missing_array_is_refused(fitted, tmp_path):
    arrays, meta = _saved(fitted, tmp_path)
    del arrays["covariances"]
    write_archive(tmp_path / "m.npz", arrays, meta)
    with pytest.raises(ValueError, match="not a complete daskgmm model: missing covariances"):
        daskgmm.load(tmp_path / "m.npz")


def test_wrong_shape_is_refused(fitted, tmp_path):
    arrays, meta = _saved(fitted, tmp_path)
    arrays["means"] = arrays["means"][:, :2]
    write_archive(tmp_path / "m.npz", arrays, meta)
    with pytest.raises(ValueError, match=r"'means' has shape \(3, 2\), expected \(3, 3\)"):
        daskgmm.load(tmp_path / "m.npz")


@pytest.mark.parametrize("drop", ["covariance_type", "n_components"])
def test_missing_metadata_entry_is_refused(fitted, tmp_path, drop):
    arrays, meta = _saved(fitted, tmp_path)
    del meta[drop]
    write_archive(tmp_path / "m.npz", arrays, meta)
    with pytest.raises(ValueError, match="bad or missing metadata"):
        daskgmm.load(tmp_path / "m.npz")


def test_unknown_covariance_type_is_refused(fitted, tmp_path):
    arrays, meta = _saved(fitted, tmp_path)
    write_archive(tmp_path / "m.npz", arrays, dict(meta, covariance_type="banded"))
    with pytest.raises(ValueError, match="unknown covariance_type 'banded'"):
        daskgmm.load(tmp_path / "m.npz")


class _Payload:
    """Unpickling this would create ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", ["metadata", "array"])
def test_pickled_object_arrays_are_refused_without_running_code(fitted, tmp_path, where):
    arrays, meta = _saved(fitted, tmp_path)
    marker = tmp_path / "code-ran"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(os.fspath(marker))
    # Sanity check: the payload does run code when unpickled.
    pickle.loads(pickle.dumps(evil))
    assert marker.exists()
    marker.unlink()

    payload = dict(arrays)
    if where == "metadata":
        payload["__daskgmm__"] = evil
    else:
        payload["__daskgmm__"] = np.array(json.dumps(meta))
        payload["weights"] = evil
    path = tmp_path / "evil.npz"
    np.savez(path, **payload)  # np.savez pickles object arrays
    with zipfile.ZipFile(path) as archive:
        assert any(name.endswith(".npy") for name in archive.namelist())
    with pytest.raises(ValueError, match="not a readable daskgmm file.*allow_pickle=False"):
        daskgmm.load(path)
    assert not marker.exists()


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftover_temp_file_of_a_killed_writer_is_cleaned(tmp_path):
    """A temporary file named after this target, this host and a process that
    no longer runs is removed by the next write; a live writer's (this
    process), another host's and another target's stay."""
    host = _host_tag()
    target = tmp_path / "state.npz"
    stale = tmp_path / f".state.npz.daskgmm-{host}-{_dead_pid()}-abc123.tmp"
    live = tmp_path / f".state.npz.daskgmm-{host}-{os.getpid()}-def456.tmp"
    remote = tmp_path / f".state.npz.daskgmm-00000000-{_dead_pid()}-ghi789.tmp"
    other = tmp_path / ".other.npz.daskgmm-xyz.tmp"
    for path in (stale, live, remote, other):
        path.write_bytes(b"half written")
    write_archive(target, {"a": np.arange(3.0)}, {"kind": "test"})
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, remote.name, other.name, "state.npz"])


# --------------------------------------------------------------------------
# Concurrent writers (issue #15, item 4)
# --------------------------------------------------------------------------


def test_a_path_created_during_the_write_is_not_replaced(tmp_path, monkeypatch):
    """Another writer creates the new path while this one is writing its
    temporary file: with overwrite=False this write fails with
    FileExistsError and the other writer's file stays as it was."""
    target = tmp_path / "m.npz"
    real_savez = np.savez

    def savez_while_another_writer_wins(handle, **arrays):
        real_savez(handle, **arrays)
        target.write_bytes(b"the other writer's model")

    monkeypatch.setattr(np, "savez", savez_while_another_writer_wins)
    with pytest.raises(FileExistsError, match="m.npz already exists"):
        write_archive(target, {"a": np.arange(3.0)}, {"kind": "test"})
    assert target.read_bytes() == b"the other writer's model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary file left


def test_two_threads_saving_the_same_new_paths_each_path_written_once(tmp_path):
    """Two writers race over the same 40 new paths with overwrite=False:
    every path is won by exactly one writer, the loser gets FileExistsError,
    and each file holds its winner's data."""
    paths = [tmp_path / f"m{i}.npz" for i in range(40)]
    won = {0: [], 1: []}
    refused = {0: 0, 1: 0}
    barrier = threading.Barrier(2)

    def writer(who):
        barrier.wait()
        for path in paths:
            try:
                write_archive(path, {"who": np.array([who])}, {"kind": "test"})
            except FileExistsError:
                refused[who] += 1
            else:
                won[who].append(path)

    threads = [threading.Thread(target=writer, args=(who,)) for who in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won[0] + won[1]) == sorted(paths)
    assert refused[0] + refused[1] == len(paths)
    for who in (0, 1):
        for path in won[who]:
            assert read_archive(path)[0]["who"].tolist() == [who]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_a_concurrent_writer_of_the_same_target_keeps_its_temporary_file(tmp_path, monkeypatch):
    """Writer B starts while writer A is between writing its temporary file
    and renaming it: B's stale-file clean-up leaves A's temporary file (A is
    alive), both writes succeed, and the last one is on disk."""
    target = tmp_path / "ckpt.npz"
    real_savez = np.savez
    calls = []

    def savez_then_another_writer(handle, **arrays):
        real_savez(handle, **arrays)
        if not calls:
            calls.append("B")
            write_archive(target, {"who": np.array([2])}, {"kind": "test"}, overwrite=True)

    monkeypatch.setattr(np, "savez", savez_then_another_writer)
    write_archive(target, {"who": np.array([1])}, {"kind": "test"}, overwrite=True)
    assert calls == ["B"]
    assert read_archive(target)[0]["who"].tolist() == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


def test_publish_overwrites_a_folder_only_when_told_and_keeps_it_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.zarr"
    target.mkdir()
    (target / "old").write_text("old output")
    new = temporary_path(target, directory=True)
    (Path(new) / "new").write_text("new output")
    # The folders this output may replace (issue #20, item 2): ones it wrote.
    store = ("an output of this test", lambda path: (Path(path) / "old").exists())
    with pytest.raises(FileExistsError, match="out.zarr already exists"):
        publish(new, target, store=store)
    assert (target / "old").read_text() == "old output"
    # The move of the new folder fails: the old one is put back.
    real_rename = os.rename

    def failing_rename(src, dst):
        if os.fspath(src) == new:
            raise KeyboardInterrupt
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(KeyboardInterrupt):
        publish(new, target, overwrite=True, store=store)
    monkeypatch.setattr(os, "rename", real_rename)
    assert (target / "old").read_text() == "old output"
    publish(new, target, overwrite=True, store=store)
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


# --------------------------------------------------------------------------
# Every field validated on load (issue #15, item 5)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diag_square(data):
    """diag with K == D: its (K, D) arrays have the shape of tied (D, D) ones."""
    return GaussianMixture(3, covariance_type="diag", random_state=0).fit(data)


def _rewrite(model, tmp_path, arrays=None, meta=None, drop_fit=None):
    saved_arrays, saved_meta = _saved(model, tmp_path)
    saved_arrays.update(arrays or {})
    saved_meta = json.loads(json.dumps(saved_meta))
    for key, value in (meta or {}).items():
        target = saved_meta
        *parents, last = key.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
    path = tmp_path / "edited.npz"
    write_archive(path, saved_arrays, saved_meta, overwrite=True)
    return path


@pytest.mark.parametrize(
    "arrays, meta, message",
    [
        (lambda m: {"weights": np.array([np.nan, 0.5, 0.5])}, {}, "'weights' holds NaN or infinite values"),
        (lambda m: {"weights": np.array([-0.2, 0.6, 0.6])}, {}, r"'weights' holds negative values \(-0.2\)"),
        (lambda m: {"weights": m.weights_ * 3}, {}, "'weights' sums to 3, not 1"),
        (lambda m: {"means": np.where(np.eye(3, dtype=bool), np.inf, m.means_)}, {}, "'means' holds NaN or infinite"),
        (lambda m: {"precisions_cholesky": -m.precisions_cholesky_}, {}, "'precisions_cholesky' has a non-positive"),
        (lambda m: {"precisions_cholesky": m.precisions_cholesky_ * 0}, {}, "'precisions_cholesky' has a non-positive"),
        (lambda m: {"precisions_cholesky": m.precisions_cholesky_ * np.nan}, {}, "'precisions_cholesky' holds NaN"),
        (lambda m: {"covariances": m.covariances_ * 2}, {}, "'covariances' is not 1 / precisions_cholesky"),
        (lambda m: {"weights": np.array(["a", "b", "c"])}, {}, "'weights' has dtype <U1, not real numbers"),
        # Metadata that disagrees with the arrays.
        (None, {"covariance_type": "tied"}, "'precisions_cholesky' is not upper triangular"),
        (None, {"n_components": 2}, r"'weights' has shape \(3,\), expected \(2,\)"),
        (None, {"params.n_components": 5}, "'params.n_components' is 5 but the file's n_components is 3"),
        (None, {"params.covariance_type": "full"}, "'params.covariance_type' is 'full' but the file's"),
        (None, {"fit.n_features_in": 4}, "'fit.n_features_in' is 4 but the file's n_features is 3"),
        # Malformed metadata.
        (None, {"n_components": "3"}, "'n_components' is '3', not an integer"),
        (None, {"n_components": None}, "'n_components' is None, not an integer"),
        (None, {"n_features": 2.5}, "'n_features' is 2.5, not an integer"),
        (None, {"fit": [1, 2]}, "'fit' is list, not a JSON object"),
        (None, {"params": "full"}, "'params' is str, not a JSON object"),
        (None, {"params.max_iter": -5}, "'params' holds an invalid setting .*max_iter"),
        (None, {"params.tol": "small"}, "'params' holds an invalid setting .*tol"),
        (None, {"fit.converged": "yes"}, "'fit.converged' is 'yes', not true or false"),
        (None, {"fit.n_iter": -1}, "'fit.n_iter' is -1, less than 0"),
        (None, {"fit.lower_bounds": "many"}, "'fit.lower_bounds' is str, not a list"),
        (None, {"fit.lower_bounds": [1.0, None]}, "'fit.lower_bounds' is None, not a number"),
        (None, {"fit.lower_bound": {"a": 1}}, "'fit.lower_bound' is .*, not a number"),
        (None, {"covariance_type": ["full"]}, r"unknown covariance_type \['full'\]"),
    ],
)
def test_every_field_is_validated_on_load(diag_square, tmp_path, arrays, meta, message):
    path = _rewrite(diag_square, tmp_path, arrays=arrays(diag_square) if arrays else None, meta=meta)
    with pytest.raises(ValueError, match=message) as err:
        daskgmm.load(path)
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_full_and_tied_precision_factors_are_checked(data, tmp_path, kind):
    model = GaussianMixture(2, covariance_type=kind, random_state=0).fit(data)
    prec = model.precisions_cholesky_
    lower = np.swapaxes(prec, -1, -2).copy()  # the transposed factor: lower triangular
    for edited, message in [
        (lower, "'precisions_cholesky' is not upper triangular"),
        (prec * np.where(np.eye(3, dtype=bool), -1.0, 1.0), "'precisions_cholesky' has a non-positive diagonal"),
    ]:
        with pytest.raises(ValueError, match=message):
            daskgmm.load(_rewrite(model, tmp_path, arrays={"precisions_cholesky": edited}))
    skewed = model.covariances_.copy()
    skewed[..., 0, 1] += 1.0
    with pytest.raises(ValueError, match="'covariances' is not symmetric"):
        daskgmm.load(_rewrite(model, tmp_path, arrays={"covariances": skewed}))
    with pytest.raises(ValueError, match="'covariances' is not the inverse of the precisions"):
        daskgmm.load(_rewrite(model, tmp_path, arrays={"covariances": model.covariances_ * 1.5}))


def _npz(path, members):
    """A zip of raw members (name -> bytes), as np.savez would lay it out."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    return path


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_malformed_files_are_value_errors_not_crashes(diag_square, tmp_path):
    """Files that made load raise TypeError, AttributeError, RecursionError or
    MemoryError: each is now a ValueError saying the file is unreadable."""
    arrays, meta = _saved(diag_square, tmp_path)
    members = {f"{name}.npy": _npy_bytes(value) for name, value in arrays.items()}
    # A header that claims 8 TB for 24 bytes of data.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    forged = dict(members, **{"weights.npy": b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 24})
    forged["__daskgmm__.npy"] = _npy_bytes(np.array(json.dumps(meta)))
    cases = {
        "huge.npz": (forged, r"weights.npy declares shape \(1000000000000,\) \(8000000000000 bytes\) but holds 24"),
        "deep.npz": (
            dict(members, **{"__daskgmm__.npy": _npy_bytes(np.array("[" * 100_000 + "]" * 100_000))}),
            "RecursionError",
        ),
        "listmeta.npz": (
            dict(members, **{"__daskgmm__.npy": _npy_bytes(np.array([json.dumps(meta)] * 2))}),
            "metadata is not a text entry",
        ),
        "nummeta.npz": (dict(members, **{"__daskgmm__.npy": _npy_bytes(np.array(3.0))}), "metadata is not a text"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            daskgmm.load(_npz(tmp_path / name, content))
    np.savez(tmp_path / "version.npz", __daskgmm__=np.array(json.dumps(dict(meta, format_version="1"))), **arrays)
    with pytest.raises(ValueError, match="'format_version' is '1', not an integer"):
        daskgmm.load(tmp_path / "version.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not a readable daskgmm file"):
        daskgmm.load(tmp_path / "plain.npy")


def test_a_checkpoint_is_not_loaded_as_a_model(tmp_path, data):
    GaussianMixture(2, max_iter=2, random_state=0).fit(data, checkpoint=tmp_path / "c.npz")
    with pytest.raises(ValueError, match="is a daskgmm checkpoint, not a saved model: resume it with fit"):
        daskgmm.load(tmp_path / "c.npz")


# --------------------------------------------------------------------------
# Models saved in their own dtype, checked to its precision (issue #20, item 1)
# --------------------------------------------------------------------------

FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


def assert_same_model(loaded, model, X):
    """Same dtypes, bitwise the same fitted arrays and answers on ``X``."""
    for name in FITTED_ARRAYS:
        assert getattr(loaded, name).dtype == getattr(model, name).dtype, name
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name), err_msg=name)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


@pytest.mark.parametrize("rho", [0.99, 0.999])
@pytest.mark.parametrize("kind", ["full", "tied"])
def test_float32_model_of_correlated_bands_round_trips(tmp_path, kind, rho):
    """float32 covariances and precision factors are each rounded to float32:
    the file is checked to float32's precision and loads as float32,
    bitwise the saved model (it was refused: 'not the inverse of the
    precisions', error 4e-6..4e-5)."""
    X = correlated_bands(rho)
    model = GaussianMixture(2, covariance_type=kind, random_state=0).fit(X)
    assert model.means_.dtype == np.float32
    model.save(tmp_path / "m.npz")
    arrays, meta = read_archive(tmp_path / "m.npz")
    assert meta["dtype"] == "float32"
    # Every parameter and statistic in float32; the iteration records (counts,
    # seconds, float64 bounds) in float64.
    fields = {name: arrays[name].dtype for name in arrays if name != "fit_history"}
    assert fields == dict.fromkeys(fields, np.dtype(np.float32))
    assert arrays["fit_history"].dtype == np.float64
    assert_same_model(daskgmm.load(tmp_path / "m.npz"), model, X)


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_float64_model_of_very_correlated_bands_round_trips(tmp_path, kind):
    X = correlated_bands(0.9999, dtype=np.float64)
    model = GaussianMixture(2, covariance_type=kind, random_state=0).fit(X)
    model.save(tmp_path / "m.npz")
    assert read_archive(tmp_path / "m.npz")[1]["dtype"] == "float64"
    assert_same_model(daskgmm.load(tmp_path / "m.npz"), model, X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_files_of_the_float64_only_writer_still_load(tmp_path, dtype):
    """Before dtypes were recorded every file held float64 arrays and
    'dtype': 'float64', whatever the model's dtype: such a file loads as a
    float64 model with the saved values, as it did."""
    X = correlated_bands(0.99, dtype=dtype)
    model = GaussianMixture(2, covariance_type="full", random_state=0).fit(X)
    model.save(tmp_path / "m.npz")
    arrays, meta = read_archive(tmp_path / "m.npz")
    write_archive(
        tmp_path / "old.npz", {name: value.astype(np.float64) for name, value in arrays.items()}, dict(meta, dtype="float64")
    )
    loaded = daskgmm.load(tmp_path / "old.npz")
    for name in FITTED_ARRAYS:
        assert getattr(loaded, name).dtype == np.float64, name
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name).astype(np.float64), err_msg=name)
    prec = loaded.precisions_cholesky_
    np.testing.assert_array_equal(loaded.precisions_, prec @ np.swapaxes(prec, 1, 2))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


@pytest.mark.parametrize("rho", [0.99, 0.999])
def test_edits_of_a_float32_file_are_still_refused(tmp_path, rho):
    X = correlated_bands(rho)
    model = GaussianMixture(2, covariance_type="full", random_state=0).fit(X)
    edits = [
        ({"covariances": model.covariances_ * np.float32(1.01)}, "'covariances' is not the inverse of the precisions"),
        ({"covariances": model.covariances_ * np.where(np.eye(8), np.float32(1.01), np.float32(1))},
         "'covariances' is not the inverse of the precisions"),
        ({"precisions_cholesky": model.precisions_cholesky_ * np.float32(1.01)},
         "'covariances' is not the inverse of the precisions"),
        ({"weights": model.weights_ * np.float32(1.01)}, "'weights' sums to 1.00999"),
        ({"means": model.means_.astype(np.float64)}, "'means' has dtype float64, but the file's dtype is 'float32'"),
    ]
    for arrays, message in edits:
        with pytest.raises(ValueError, match=message):
            daskgmm.load(_rewrite(model, tmp_path, arrays=arrays))
    for value, message in [("float16", "'dtype' is 'float16', not one of"), (None, "'dtype' is None")]:
        with pytest.raises(ValueError, match=message):
            daskgmm.load(_rewrite(model, tmp_path, meta={"dtype": value}))


# --------------------------------------------------------------------------
# Required metadata (issue #20, item 11)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "drop, message",
    [
        ("fit.lower_bound", "'fit.lower_bound' is missing"),
        ("fit.converged", "'fit.converged' is missing"),
        ("fit.n_iter", "'fit.n_iter' is missing"),
        ("fit.lower_bounds", "'fit.lower_bounds' is missing"),
        ("fit.n_features_in", "'fit.n_features_in' is missing"),
        ("fit", "'fit' is missing"),
        ("dtype", r"bad or missing metadata \('dtype' is missing\)"),
    ],
)
def test_a_missing_metadata_entry_is_named(diag_square, tmp_path, drop, message):
    """A file without 'fit.lower_bound' loaded (with a NaN lower bound) and
    made ``daskgmm info`` fail with a TypeError."""
    arrays, meta = _saved(diag_square, tmp_path)
    *parents, last = drop.split(".")
    holder = meta
    for parent in parents:
        holder = holder[parent]
    del holder[last]
    write_archive(tmp_path / "m.npz", arrays, meta)
    with pytest.raises(ValueError, match=message):
        daskgmm.load(tmp_path / "m.npz")


# --------------------------------------------------------------------------
# The stream of partial_fit travels with the model (issue #20, item 4)
# --------------------------------------------------------------------------


def _stream_batches(seed=1):
    return [_data(seed + i, n=200) for i in range(4)]


@pytest.mark.parametrize("mode", ["stepwise", "exact"])
def test_a_loaded_model_continues_a_stream_as_the_pickled_one(tmp_path, mode):
    """The issue's case: saved and loaded in the middle of a stream, the
    model lost it (the next stepwise batch scored -10.1 instead of -3.6;
    an unfinished exact pass was lost and end_pass raised)."""
    batches = _stream_batches()
    model = GaussianMixture(3, random_state=0, partial_fit_mode=mode)
    for batch in batches[:2]:
        model.partial_fit(batch)
    model.save(tmp_path / "m.npz")
    loaded, pickled = daskgmm.load(tmp_path / "m.npz"), pickle.loads(pickle.dumps(model))
    assert (loaded.n_batch_iter_, loaded.n_samples_seen_) == (pickled.n_batch_iter_, pickled.n_samples_seen_) == (2, 400)
    for copy in (loaded, pickled):
        copy.partial_fit(batches[2])
        if mode == "exact":
            copy.end_pass()  # the M-step of the whole pass: the three batches
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(pickled, name), err_msg=name)
    assert loaded.score(batches[3]) == pickled.score(batches[3])
    assert loaded.lower_bounds_ == pickled.lower_bounds_ and loaded.n_iter_ == pickled.n_iter_
    assert (loaded.n_batch_iter_, loaded.n_samples_seen_) == (3, 600)


def test_a_file_without_the_stream_loads_as_before(tmp_path):
    """Files written before the stream was saved load as models without one:
    partial_fit then starts the running statistics from its first batch."""
    batches = _stream_batches()
    model = GaussianMixture(3, random_state=0).fit(batches[0])
    arrays, meta = _saved(model, tmp_path)
    old_arrays = {name: value for name, value in arrays.items() if not name.startswith("fit_statistics_")}
    old_meta = {key: value for key, value in meta.items() if key != "stream"}
    write_archive(tmp_path / "old.npz", old_arrays, old_meta)
    old = daskgmm.load(tmp_path / "old.npz")
    assert old._fit_statistics is None and getattr(old, "_online_state", None) is None
    assert not hasattr(old, "n_batch_iter_")
    np.testing.assert_array_equal(old.predict(batches[1]), model.predict(batches[1]))
    old.partial_fit(batches[1])
    assert (old.n_batch_iter_, old.n_samples_seen_) == (1, 200)  # the fit's 200 rows are not known
    model.partial_fit(batches[1])
    assert (model.n_batch_iter_, model.n_samples_seen_) == (1, 400)


@pytest.fixture(scope="module")
def mid_pass():
    """A fitted model in the middle of an exact pass: the file holds the fit's
    statistics, the stream's counts and the pass's statistics."""
    batches = _stream_batches()
    model = GaussianMixture(3, covariance_type="diag", random_state=0, partial_fit_mode="exact").fit(batches[0])
    return model.partial_fit(batches[1])


@pytest.mark.parametrize(
    "arrays, meta, message",
    [
        (lambda m: {"fit_statistics_nk": -m._fit_statistics.nk}, {}, r"'fit_statistics_nk' holds negative values"),
        (lambda m: {"stream_statistics_scatter": m._online_state.statistics.scatter * np.nan}, {},
         "'stream_statistics_scatter' holds NaN or infinite values"),
        (lambda m: {"stream_statistics_means": np.zeros((3, 2))}, {},
         r"'stream_statistics_means' has shape \(3, 2\), expected \(3, 3\)"),
        (lambda m: {"fit_statistics_scatter": np.zeros((3, 3, 3))}, {},
         r"'fit_statistics_scatter' has shape \(3, 3, 3\), expected \(3, 3\)"),
        (lambda m: {"fit_statistics_n_samples": np.array([0.0])}, {}, "'fit_statistics_n_samples' is 0.0, not positive"),
        (lambda m: {"stream_statistics_n_samples": np.array([-1.0])}, {},
         "'stream_statistics_n_samples' is -1.0, not >= 0"),
        (lambda m: {"fit_statistics_nk": np.array([1, 2, 3])}, {}, "'fit_statistics_nk' has dtype int64, not float32"),
        (lambda m: {"stream_statistics_nk": m._online_state.statistics.nk.astype(np.float32)}, {},
         "'stream_statistics_nk' has dtype float32, not float64 as 'stream_statistics_n_samples'"),
        (lambda m: {"fit_statistics_scatter": None}, {}, "'fit_statistics_scatter' is missing"),
        (lambda m: {"fit_history": np.array([[1.0, -1.0, np.nan, 0.1, 1.0]])}, {}, "'fit_history' holds NaN"),
        (lambda m: {"fit_history": np.array([[-1.0, -1.0, 0.5, 0.1, 1.0]])}, {},
         "'fit_history' holds iteration values that are infinite or negative"),
        (lambda m: {"fit_history": np.array([[1.0, -1.0, 0.5, 0.1, 1.5]])}, {},
         "'fit_history' holds n_chunks values that are not integers"),
        (lambda m: {"fit_history": np.zeros((2, 4))}, {}, r"'fit_history' has shape \(2, 4\), expected \(2, 5\)"),
        (None, {"stream.mode": "batch"}, r"'stream.mode' is 'batch', not one of \['stepwise', 'exact'\]"),
        (None, {"stream.n_batch_iter": -1}, "'stream.n_batch_iter' is -1, less than 0"),
        (None, {"stream.n_batch_iter": 1.5}, "'stream.n_batch_iter' is 1.5, not an integer"),
        (None, {"stream.batch_offset": "2"}, "'stream.batch_offset' is '2', not an integer"),
        (None, {"stream.n_chunks": None}, "'stream.n_chunks' is None, not an integer"),
        (None, {"stream.n_samples_seen": -5}, "'stream.n_samples_seen' is -5.0, not a finite number >= 0"),
        (None, {"stream.n_samples_seen": float("inf")}, "'stream.n_samples_seen' is inf, not a finite number"),
        (None, {"stream.n_samples_seen": "many"}, "'stream.n_samples_seen' is 'many', not a number"),
        (None, {"stream.weight_scale": 3.0}, "'stream.weight_scale' is 3.0, not a positive power of two"),
        (None, {"stream.weight_scale": 0.0}, "'stream.weight_scale' is 0.0, not a positive power of two"),
        (None, {"stream.weight_scale": float("inf")}, "'stream.weight_scale' is inf, not a positive power of two"),
        (None, {"stream": "stepwise"}, "'stream' is str, not a JSON object"),
        (None, {"stream": None}, "'stream' is missing, but the file holds stream_statistics"),
    ],
)
def test_every_stream_field_is_validated_on_load(mid_pass, tmp_path, arrays, meta, message):
    edits = arrays(mid_pass) if arrays else {}
    path = _rewrite(mid_pass, tmp_path, arrays={k: v for k, v in edits.items() if v is not None}, meta=meta)
    if any(v is None for v in edits.values()):
        saved, document = read_archive(path)
        write_archive(path, {k: v for k, v in saved.items() if edits.get(k, 0) is not None}, document, overwrite=True)
    with pytest.raises(ValueError, match=message) as err:
        daskgmm.load(path)
    assert str(err.value).startswith(str(path))


def test_the_saved_stream_fields_are_those_documented(mid_pass, tmp_path):
    arrays, meta = _saved(mid_pass, tmp_path)
    state = mid_pass._online_state
    assert meta["stream"] == {"mode": "exact", "n_batch_iter": 1, "n_samples_seen": 200.0, "batch_offset": 0,
                              "n_chunks": 1, "weight_scale": 1.0}
    for prefix, stats in (("fit_statistics", mid_pass._fit_statistics), ("stream_statistics", state.statistics)):
        for name in ("n_samples", "log_likelihood", "nk", "means", "scatter"):
            np.testing.assert_array_equal(arrays[f"{prefix}_{name}"].reshape(np.shape(getattr(stats, name))),
                                          getattr(stats, name))
    assert arrays["fit_statistics_n_samples"] == 200 and arrays["stream_statistics_n_samples"] == 200


def test_a_checkpoint_with_bad_statistics_is_refused(tmp_path, data):
    GaussianMixture(2, max_iter=2, random_state=0).fit(data, checkpoint=tmp_path / "c.npz")
    arrays, meta = read_archive(tmp_path / "c.npz")
    arrays["runs_statistics_nk"] = -arrays["runs_statistics_nk"]
    write_archive(tmp_path / "c.npz", arrays, meta, overwrite=True)
    with pytest.raises(ValueError, match="'runs_statistics_nk' holds negative values .*delete it to start the fit"):
        GaussianMixture(2, max_iter=3, random_state=0).fit(data, checkpoint=tmp_path / "c.npz")
