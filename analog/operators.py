"""Matrices the native engine multiplies a batch by from the right, `x @ M`, held in the
form that multiplies fastest: CSR for a mostly-zero matrix, or a symmetric K by the
blocks of its (E, R) partition (analog/schur.py)."""
from __future__ import annotations

import numpy as np


class SparseRight:
    """A matrix M held as CSR, for `x @ M` with a dense batch x on the left."""

    __array_ufunc__ = None    # numpy's `x @ self` defers to __rmatmul__

    def __init__(self, M):
        from scipy import sparse
        self.T = sparse.csr_matrix(M.T)     # M dense or scipy sparse

    def __rmatmul__(self, x):
        return np.asarray((self.T @ np.asarray(x).T).T)


class PartitionedK:
    """K, for `v @ K` with a batch v on the left, multiplied by its (E, R) blocks."""

    __array_ufunc__ = None

    def __init__(self, solver):
        self.solver = solver

    def __rmatmul__(self, v):
        return self.solver.times(np.asarray(v))
