"""Saved models (daskgmm.io): exact round trip, safe writes, clear errors on
bad files, and no code execution on load."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import daskgmm
from daskgmm import GaussianMixture, NotFittedError
from daskgmm.io import FORMAT, FORMAT_VERSION, read_archive, save_model, write_archive


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
        assert sorted(archive.files) == sorted(["__daskgmm__", "weights", "means", "covariances", "precisions_cholesky"])
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


def test_leftover_temp_file_of_a_killed_writer_is_cleaned(tmp_path):
    from daskgmm.io import write_archive

    target = tmp_path / "state.npz"
    stale = tmp_path / ".state.npz.daskgmm-abc123.tmp"
    stale.write_bytes(b"half written")
    other = tmp_path / ".other.npz.daskgmm-xyz.tmp"
    other.write_bytes(b"another target's")
    write_archive(target, {"a": np.arange(3.0)}, {"kind": "test"})
    assert not stale.exists()
    assert other.exists()  # only this target's leftovers are touched
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.daskgmm-xyz.tmp", "state.npz"]
