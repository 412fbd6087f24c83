"""What outputs may replace and what inputs are read (issue #20, items 2 and 3).

Overwriting replaces a regular file (through a symbolic link: the linked file
gets the new content, the link stays) or, for the command line's zarr
outputs, a store that ``daskgmm predict`` wrote; a directory, FIFO or socket
is refused by name and left as it was.  Nothing reads a special file (a FIFO
would block the reader).  Every file written gets the permissions ``open()``
gives, whatever the umask.

Special files are FIFOs and sockets made in ``tmp_path``: no test replaces or
writes to a device, so none can destroy anything if the fix is missing.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from pathlib import Path

import numpy as np
import pytest

import daskgmm
from daskgmm import GaussianMixture, cli
from daskgmm.io import read_archive, write_archive

xr = pytest.importorskip("xarray")


def two_blobs(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(size=(n // 2, 2)), rng.normal(size=(n - n // 2, 2)) * 0.5 + [5.0, 3.0]])


@pytest.fixture(scope="module")
def model():
    return GaussianMixture(2, random_state=0).fit(two_blobs())


@pytest.fixture()
def user_folder(tmp_path):
    """A user's directory tree: what no overwrite may delete."""
    folder = tmp_path / "results"
    (folder / "run1").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "run1" / "data.bin").write_bytes(b"\x00\x01 precious")
    return folder


def tree(path):
    """Every entry under ``path`` with its content (files) or None (folders)."""
    path = Path(path)
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def fifo(path):
    os.mkfifo(path)
    return path


def unix_socket(path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(os.fspath(path))
    server.close()  # the socket file stays
    return path


SPECIAL = {"fifo": (fifo, "a FIFO \\(named pipe\\)", stat.S_ISFIFO), "socket": (unix_socket, "a socket", stat.S_ISSOCK)}


def leftovers(*folders):
    return sorted(p.name for folder in folders for p in Path(folder).iterdir() if ".daskgmm-" in p.name)


def error_of(capsys, argv):
    """The one line of a command's error (exit status 1)."""
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "\n" not in err.strip() and "Traceback" not in err, err
    assert err.startswith("daskgmm: error: "), err
    return err.strip()[len("daskgmm: error: "):]


# --------------------------------------------------------------------------
# Item 2: overwrite replaces regular files only
# --------------------------------------------------------------------------


def test_save_with_overwrite_refuses_a_directory_and_keeps_its_tree(model, user_folder):
    before = tree(user_folder)
    with pytest.raises(IsADirectoryError, match=f"^{re.escape(str(user_folder))} is a directory, not a file; refusing to replace it"):
        model.save(user_folder, overwrite=True)
    assert tree(user_folder) == before
    assert leftovers(user_folder.parent) == []


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", sorted(SPECIAL))
def test_save_with_overwrite_refuses_a_special_file(model, tmp_path, kind):
    make, described, is_kind = SPECIAL[kind]
    path = make(tmp_path / "m.npz")
    with pytest.raises(FileExistsError, match=f"^{re.escape(str(path))} is {described}, not a file; refusing to replace it"):
        model.save(path, overwrite=True)
    assert is_kind(os.lstat(path).st_mode)
    assert leftovers(tmp_path) == []


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["directory", "fifo", "missing"])
def test_save_with_overwrite_refuses_a_link_to_anything_but_a_file(model, tmp_path, user_folder, kind):
    target = {"directory": user_folder, "fifo": tmp_path / "pipe", "missing": tmp_path / "gone.npz"}[kind]
    if kind == "fifo":
        fifo(target)
    link = tmp_path / "m.npz"
    link.symlink_to(target)
    before = tree(user_folder)
    message = {
        "directory": "is a symbolic link to a directory, not a file",
        "fifo": "is a symbolic link to a FIFO \\(named pipe\\), not a file",
        "missing": "is a symbolic link to a missing path",
    }[kind]
    with pytest.raises(OSError, match=f"^{re.escape(str(link))} {message}; refusing to replace it"):
        model.save(link, overwrite=True)
    assert os.readlink(link) == os.fspath(target)
    assert tree(user_folder) == before
    assert not os.path.lexists(tmp_path / "gone.npz")
    assert leftovers(tmp_path) == []


def test_overwriting_a_link_to_a_file_replaces_the_file_and_keeps_the_link(model, tmp_path):
    """As ``open()`` and ``np.save`` write through a link: the link still
    points to the same file, which holds the new model, written atomically
    beside it (its folder has no temporary file left)."""
    elsewhere = tmp_path / "store"
    elsewhere.mkdir()
    real = elsewhere / "model-v1.npz"
    GaussianMixture(3, random_state=0).fit(two_blobs()).save(real)
    link = tmp_path / "latest.npz"
    link.symlink_to(real)
    model.save(link, overwrite=True)
    assert link.is_symlink() and os.readlink(link) == os.fspath(real)
    np.testing.assert_array_equal(daskgmm.load(real).means_, model.means_)
    assert leftovers(tmp_path, elsewhere) == []


def test_a_folder_tmp_replaces_only_a_folder_its_store_recognises(tmp_path, user_folder):
    """``publish`` of a folder output: a folder replaced only when ``store``
    recognises it, never without ``store``."""
    from daskgmm.io import publish, temporary_path

    before = tree(user_folder)
    new = temporary_path(user_folder, directory=True)
    (Path(new) / "label").write_text("new")
    with pytest.raises(IsADirectoryError, match="is a directory, not a file; refusing to replace it"):
        publish(new, user_folder, overwrite=True)
    store = ("an output of this test", lambda path: (Path(path) / "label").exists())
    with pytest.raises(IsADirectoryError, match="is a directory, not an output of this test; refusing to replace it"):
        publish(new, user_folder, overwrite=True, store=store)
    assert tree(user_folder) == before
    old_output = tmp_path / "out"
    old_output.mkdir()
    (old_output / "label").write_text("old")
    publish(new, old_output, overwrite=True, store=store)
    assert tree(old_output) == {"label": b"new"}
    assert tree(user_folder) == before
    assert leftovers(tmp_path) == []


# Reading: nothing opens a special file ---------------------------------------


@pytest.mark.timeout(20)
def test_load_info_and_read_archive_refuse_a_fifo_without_blocking(tmp_path, capsys):
    path = fifo(tmp_path / "m.npz")
    expected = f"{path} is not a readable daskgmm file: it is a FIFO (named pipe), not a regular file."
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        daskgmm.load(path)
    with pytest.raises(ValueError, match="it is a FIFO \\(named pipe\\), not a regular file"):
        read_archive(path, metadata_only=True)
    assert error_of(capsys, ["info", str(path)]) == expected
    assert error_of(capsys, ["predict", str(path), str(tmp_path / "X.npy"), "--scheduler", "threads"]) == expected


@pytest.mark.timeout(20)
def test_a_fifo_as_checkpoint_is_refused_without_blocking(tmp_path):
    path = fifo(tmp_path / "ckpt.npz")
    with pytest.raises(ValueError, match="ckpt.npz is not a readable daskgmm file: it is a FIFO"):
        GaussianMixture(2, random_state=0).fit(two_blobs(), checkpoint=path)
    assert stat.S_ISFIFO(os.lstat(path).st_mode)


def test_a_character_device_is_not_read():
    # Refusal only: /dev/null is never written to.
    with pytest.raises(ValueError, match="^/dev/null is not a readable daskgmm file: it is a character device"):
        daskgmm.load("/dev/null")


# The command line's outputs --------------------------------------------------


@pytest.fixture()
def npy(tmp_path):
    np.save(tmp_path / "X.npy", two_blobs())
    return tmp_path / "X.npy"


def test_fit_overwrite_refuses_a_directory_before_computing(npy, user_folder, capsys, monkeypatch):
    monkeypatch.setattr(cli, "compute_context", None)  # computing would fail: refused before it
    before = tree(user_folder)
    argv = ["fit", str(npy), "-k", "2", "-q", "--scheduler", "threads", "-o", str(user_folder), "--overwrite"]
    assert error_of(capsys, argv) == f"{user_folder} is a directory, not a file; refusing to replace it."
    assert tree(user_folder) == before


@pytest.mark.timeout(20)
def test_fit_overwrite_refuses_a_fifo(npy, tmp_path, capsys):
    out = fifo(tmp_path / "m.npz")
    argv = ["fit", str(npy), "-k", "2", "-q", "--scheduler", "threads", "-o", str(out), "--overwrite"]
    assert error_of(capsys, argv) == f"{out} is a FIFO (named pipe), not a file; refusing to replace it."
    assert stat.S_ISFIFO(os.lstat(out).st_mode)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("role", ["input", "weights", "netcdf"])
def test_a_fifo_as_an_input_is_refused_without_blocking(npy, tmp_path, capsys, role):
    pipe = fifo(tmp_path / ("in.nc" if role == "netcdf" else "in.npy"))
    data = str(npy) if role == "weights" else str(pipe)
    argv = ["fit", data, "-k", "2", "-q", "--scheduler", "threads", "-o", str(tmp_path / "m.npz")]
    if role == "weights":
        argv += ["--sample-weight", str(pipe)]
    what = {"input": "a .npy file", "weights": "a .npy file", "netcdf": "a netCDF file"}[role]
    assert error_of(capsys, argv) == f"{pipe} is not {what}: it is a FIFO (named pipe), not a regular file."
    assert not (tmp_path / "m.npz").exists()


def test_fit_checkpoint_in_a_directory_is_refused_and_kept(npy, user_folder, capsys):
    before = tree(user_folder)
    argv = ["fit", str(npy), "-k", "2", "-q", "--scheduler", "threads", "-o", str(npy.parent / "m.npz"),
            "--checkpoint", str(user_folder)]
    assert error_of(capsys, argv) == f"{user_folder} is not a readable daskgmm file: it is a directory, not a regular file."
    assert tree(user_folder) == before


@pytest.fixture()
def labelled(tmp_path, model):
    rng = np.random.default_rng(0)
    cube = xr.DataArray(rng.normal(size=(4, 5, 2)), dims=("y", "x", "band"), name="v")
    cube.to_dataset().to_zarr(tmp_path / "cube.zarr")
    model.save(tmp_path / "m.npz")
    return tmp_path


def predict_argv(folder, out, *extra):
    return ["predict", str(folder / "m.npz"), str(folder / "cube.zarr"), "--feature-dim", "band", "-o", str(out),
            "--scheduler", "threads", "-q", *extra]


@pytest.mark.parametrize("name", ["labels.zarr", "labels.npy", "labels.nc"])
def test_predict_overwrite_refuses_a_users_folder(labelled, capsys, name):
    folder = labelled / name
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "keep.txt").write_text("mine")
    before = tree(folder)
    what = "a zarr store written by daskgmm predict" if name.endswith(".zarr") else "a file"
    message = error_of(capsys, predict_argv(labelled, folder, "--overwrite"))
    assert message == f"{folder} is a directory, not {what}; refusing to replace it."
    assert tree(folder) == before
    assert leftovers(labelled) == []


def test_predict_overwrite_replaces_its_own_zarr_store_only(labelled, capsys):
    """A zarr store ``daskgmm predict`` wrote is replaced; another zarr
    store (here a copy of the input) is not."""
    import shutil

    out = labelled / "labels.zarr"
    assert cli.main(predict_argv(labelled, out)) == 0
    (out / "stray").write_text("from the first run")
    assert cli.main(predict_argv(labelled, out, "--overwrite")) == 0
    assert not (out / "stray").exists()
    assert xr.open_zarr(out).label.dims == ("y", "x")
    other = labelled / "copy.zarr"
    shutil.copytree(labelled / "cube.zarr", other)
    before = tree(other)
    message = error_of(capsys, predict_argv(labelled, other, "--overwrite"))
    assert message == f"{other} is a directory, not a zarr store written by daskgmm predict; refusing to replace it."
    assert tree(other) == before
    assert leftovers(labelled) == []


def test_demo_overwrite_refuses_a_directory(user_folder, capsys):
    pytest.importorskip("matplotlib")
    before = tree(user_folder)
    argv = ["demo", "--n-samples", "600", "--scheduler", "threads", "-q", "--plot", str(user_folder), "--overwrite"]
    assert error_of(capsys, argv) == f"{user_folder} is a directory, not a file; refusing to replace it."
    assert tree(user_folder) == before


# --------------------------------------------------------------------------
# Item 3: the permissions open() gives, whatever the umask
# --------------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_models_and_checkpoints_get_the_umask_mode(model, tmp_path, umask):
    model.save(tmp_path / "m.npz")
    assert mode(tmp_path / "m.npz") == 0o666 & ~umask
    # Replaced: the new file's mode is the umask's too (open() of a new file).
    os.chmod(tmp_path / "m.npz", 0o600)
    model.save(tmp_path / "m.npz", overwrite=True)
    assert mode(tmp_path / "m.npz") == 0o666 & ~umask
    GaussianMixture(2, random_state=0, max_iter=3).fit(two_blobs(), checkpoint=tmp_path / "ckpt.npz")
    assert mode(tmp_path / "ckpt.npz") == 0o666 & ~umask
    write_archive(tmp_path / "new" / "a.npz", {"a": np.arange(2.0)}, {"kind": "test"})
    assert mode(tmp_path / "new" / "a.npz") == 0o666 & ~umask


def test_command_line_outputs_get_the_umask_mode(labelled, npy, umask):
    folder = labelled
    assert cli.main(["fit", str(npy), "-k", "2", "-q", "--scheduler", "threads", "-o", str(folder / "fit.npz")]) == 0
    assert mode(folder / "fit.npz") == 0o666 & ~umask
    for name in ("labels.npy", "labels.nc"):
        assert cli.main(predict_argv(folder, folder / name)) == 0
        assert mode(folder / name) == 0o666 & ~umask
    assert cli.main(predict_argv(folder, folder / "labels.zarr", "--proba")) == 0
    store = folder / "labels.zarr"
    entries = [store, *store.rglob("*")]
    assert len(entries) > 5
    assert {str(p.relative_to(folder)): mode(p) for p in entries} == {
        str(p.relative_to(folder)): (0o777 if p.is_dir() else 0o666) & ~umask for p in entries
    }


def test_demo_plot_gets_the_umask_mode(tmp_path, umask):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "demo.png"
    assert cli.main(["demo", "--n-samples", "600", "--scheduler", "threads", "-q", "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert mode(plot) == 0o666 & ~umask
