"""Reading the matrices the command line fits: ``.npy``, ``.npz`` (dense or scipy sparse), Matrix Market
``.mtx`` and 10x folders, ``.csv`` / ``.tsv``, ``.h5ad``. Nothing is unpickled (``allow_pickle=False``), and
a malformed file is a :class:`DataFileError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

__all__ = ["DataFileError", "Matrix", "read_matrix"]


class DataFileError(ValueError):
    """A data file that cannot be read as a matrix: the message names the file and the problem."""


@dataclass
class Matrix:
    """X (samples × features, numpy or scipy sparse), its row and column names when the file has them, and
    the AnnData it came from (``.h5ad``)."""

    X: object
    row_names: list = field(default_factory=list)
    column_names: list = field(default_factory=list)
    adata: object = None


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _first(folder: Path, *names: str) -> Path | None:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.exists():
                return candidate
    return None


def _read_names(path: Path | None, column: int) -> list:
    if path is None:
        return []
    with _open_text(path) as handle:
        return [line.rstrip("\n").split("\t")[min(column, len(line.split("\t")) - 1)] for line in handle if line.strip()]


def _read_mtx(path: Path):
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            matrix = scipy.io.mmread(handle)
    except Exception as error:  # noqa: BLE001 — scipy raises many kinds for a bad file
        raise DataFileError(f"{path}: not a readable Matrix Market file ({type(error).__name__}: {error})") from None
    return sp.csr_matrix(matrix) if sp.issparse(matrix) else np.asarray(matrix)


def _read_10x(folder: Path) -> Matrix:
    """A 10x Genomics folder: ``matrix.mtx`` (genes × cells) with ``features.tsv`` (or ``genes.tsv``) and
    ``barcodes.tsv``, read as cells × genes with their names."""
    matrix_path = _first(folder, "matrix.mtx")
    if matrix_path is None:
        raise DataFileError(f"{folder}: a folder must hold a 10x matrix.mtx(.gz) with features.tsv and barcodes.tsv")
    genes_by_cells = _read_mtx(matrix_path)
    X = genes_by_cells.T.tocsr() if sp.issparse(genes_by_cells) else np.ascontiguousarray(genes_by_cells.T)
    genes = _read_names(_first(folder, "features.tsv", "genes.tsv"), column=1)
    cells = _read_names(_first(folder, "barcodes.tsv"), column=0)
    for names, size, what in ((genes, X.shape[1], "features"), (cells, X.shape[0], "barcodes")):
        if names and len(names) != size:
            raise DataFileError(f"{folder}: {len(names)} {what} for a matrix with {size} of them")
    return Matrix(X, cells, genes)


def _read_npz(path: Path):
    with np.load(path, allow_pickle=False) as archive:
        files = set(archive.files)
        if {"format", "shape", "data"} <= files:  # scipy.sparse.save_npz
            return sp.load_npz(path).tocsr()
        if not archive.files:
            raise DataFileError(f"{path}: the archive holds no array")
        name = "X" if "X" in files else archive.files[0]
        return archive[name]


def _read_text(path: Path, delimiter: str | None):
    try:
        return np.loadtxt(path, delimiter=delimiter, ndmin=2)
    except ValueError as error:
        raise DataFileError(f"{path}: not a table of numbers ({error})") from None


def read_matrix(path) -> Matrix:
    """Read the matrix in ``path`` (format by its suffix, or a 10x folder)."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_10x(path)
    suffixes = [s.lower() for s in path.suffixes]
    suffix = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    try:
        if suffix == ".npy":
            X = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            X = _read_npz(path)
        elif suffix == ".mtx":
            X = _read_mtx(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            X = _read_text(path, "," if suffix == ".csv" else ("\t" if suffix == ".tsv" else None))
        elif suffix == ".h5ad":
            from .tl import _require_anndata

            adata = _require_anndata().read_h5ad(path)
            return Matrix(adata.X, list(adata.obs_names), list(adata.var_names), adata)
        else:
            raise DataFileError(f"{path}: unknown format {suffix or '(no suffix)'!r}: use .npy, .npz, .mtx, .csv, .tsv, "
                                ".h5ad or a 10x folder")
    except DataFileError:
        raise
    except ValueError as error:  # numpy: pickled object arrays, truncated files, bad headers
        raise DataFileError(f"{path}: {error}") from None
    except (OSError, EOFError) as error:
        raise DataFileError(f"{path}: cannot read it ({type(error).__name__}: {error})") from None
    if getattr(X, "ndim", 2) != 2:
        raise DataFileError(f"{path}: expected a 2-D matrix, got shape {getattr(X, 'shape', '?')}")
    if not sp.issparse(X) and X.dtype.kind not in "biuf":
        raise DataFileError(f"{path}: expected numbers, got dtype {X.dtype}")
    return Matrix(X)
