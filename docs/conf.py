"""Sphinx configuration: the pages of docs/ (MyST Markdown) and an API reference from the docstrings.

    sphinx-build -W --keep-going -b html docs docs/_build/html

The pages stay plain Markdown that reads on a code host; the committed records next to them
(studies/, results/, bench/, bn_shift/) are data, not pages.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the checkout's package, also without an installed copy

project = "poolstudy"
author = "poolstudy contributors"
copyright = "poolstudy contributors"  # noqa: A001 (Sphinx's name)

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "studies", "results", "bench", "bn_shift"]

myst_heading_anchors = 3  # links to "#a-section" of a page resolve
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = True

html_theme = "alabaster"
html_title = "poolstudy"
