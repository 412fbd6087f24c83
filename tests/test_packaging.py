"""What ships with the package: one version, the license text, the typing
marker, and citation metadata that agree with pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

import daskgmm

REPO = Path(__file__).resolve().parents[1]


def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_version_is_written_once_and_the_installed_metadata_agrees():
    project = pyproject()["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "daskgmm._version.__version__"}
    # Read without importing the package (a build has not its dependencies):
    # a literal assignment in daskgmm/_version.py, the one the package exports.
    source = (REPO / "daskgmm" / "_version.py").read_text()
    assert source.count("__version__ =") == 1
    assert importlib.metadata.version("daskgmm") == daskgmm.__version__


def test_license_is_an_spdx_expression_with_its_text():
    project = pyproject()["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, daskgmm developers" in text
    assert "Neither the name of the copyright holder nor the names of its" in text


def test_citation_file_is_cff_1_2_0_and_matches_the_metadata():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["type"] == "software"
    assert citation["message"] and citation["title"].startswith("daskgmm")
    assert citation["authors"] and all("name" in a or "family-names" in a for a in citation["authors"])
    assert citation["license"] == pyproject()["project"]["license"]
    assert "version" not in citation  # written once, in daskgmm/_version.py


@pytest.mark.slow
def test_the_wheel_ships_the_license_the_typing_marker_and_the_version(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "daskgmm", source / "daskgmm", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("daskgmm-*.whl")
    assert wheel.name.startswith(f"daskgmm-{daskgmm.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"daskgmm-{daskgmm.__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        license_text = archive.read(f"{info}/licenses/LICENSE").decode()
    assert "daskgmm/py.typed" in names
    assert f"Version: {daskgmm.__version__}\n" in metadata
    assert "License-Expression: BSD-3-Clause\n" in metadata
    assert "License-File: LICENSE\n" in metadata
    assert license_text == (REPO / "LICENSE").read_text()
    assert "deprecated" not in result.stderr.lower()
