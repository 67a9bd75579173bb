"""Sphinx configuration of the API reference: ``make docs`` (warnings are errors)."""

project = "fastnmf"
extensions = ["sphinx.ext.autodoc", "numpydoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]  # README.md is the folder's index on GitHub
html_theme = "alabaster"
autodoc_typehints = "none"
# numpydoc: the docstrings' own sections; no autosummary tables of every member, no validation of free text.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
myst_heading_anchors = 3
# The markdown pages link to source files and each other by relative paths, which are not documents.
suppress_warnings = ["myst.xref_missing"]
