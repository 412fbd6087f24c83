"""Sphinx configuration of daskgmm's documentation.

Build it from the repository root with
``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(``pip install ".[docs]"`` installs what it needs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the gallery draws without a display

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # document this checkout, not another installed copy

import daskgmm  # noqa: E402

project = "daskgmm"
author = "daskgmm developers"
copyright = "2026, daskgmm developers"
release = daskgmm.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
default_role = "code"

# API pages: one page per public object, generated from the names listed in
# api.rst (docs/generated/, not committed).
autosummary_generate = True
autodoc_default_options = {"members": True, "member-order": "groupwise"}
autodoc_typehints = "none"  # numpydoc's Parameters sections give the types
numpydoc_show_class_members = False  # the class template lists the methods itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# The gallery runs every examples/gallery/plot_*.py on small data with dask's
# threaded scheduler; a failing example fails the build.
sphinx_gallery_conf = {
    "examples_dirs": [str(DOCS.parent / "examples" / "gallery")],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_signature": False,
    "min_reported_time": 1,
}

html_theme = "pydata_sphinx_theme"
html_title = f"daskgmm {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": [], "install": []}
html_show_sourcelink = False
html_static_path = ["_static"]
html_css_files = ["custom.css"]
