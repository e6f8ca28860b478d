"""Checking and preparing what an encoder is given: images, class labels, target embeddings.

Every error is a :class:`~digital.errors.DigitalInputError` naming the argument and what
was wrong with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DigitalInputError

N_CLASSES = 10
IMAGE_SHAPE = (28, 28)


def prepare_images(images: Any, *, name: str = "images") -> np.ndarray:
    """Validate images and return them as float32 ``(N, 28, 28, 1)`` scaled to [0, 1].

    Accepted: arrays of shape ``(N, 28, 28)`` or ``(N, 28, 28, 1)``.  Integer arrays
    are taken to be 0..255 and divided by 255.  Float arrays whose maximum exceeds 1 are
    taken to be on the 0..255 scale too; otherwise they are used as they are.
    """
    arr = np.asarray(images)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer)
        or np.issubdtype(arr.dtype, np.floating)
        or arr.dtype == bool
    ):
        raise DigitalInputError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[1:] != IMAGE_SHAPE:
        raise DigitalInputError(
            f"{name} must have shape (N, 28, 28) or (N, 28, 28, 1), got shape {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DigitalInputError(
                f"integer {name} must lie in 0..255, got values in "
                f"[{arr.min()}, {arr.max()}]"
            )
        out = arr.astype(np.float32) / np.float32(255.0)
    else:
        out = arr.astype(np.float32)
        if out.size:
            if not np.all(np.isfinite(out)):
                raise DigitalInputError(f"{name} contains NaN or infinite values")
            lo, hi = float(out.min()), float(out.max())
            if lo < 0.0 or hi > 255.0:
                raise DigitalInputError(
                    f"float {name} must lie in [0, 1] (or 0..255), got values in "
                    f"[{lo}, {hi}]"
                )
            if hi > 1.0:
                out = out / np.float32(255.0)
    return out[..., None]


def validate_labels(labels: Any, n: int, *, name: str = "labels") -> np.ndarray:
    """Return labels as int64 ``(n,)`` in 0..9, or raise a ValueError."""
    lab = np.asarray(labels)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1:
        raise DigitalInputError(f"{name} must have shape (N,), got shape {lab.shape}")
    if lab.shape[0] != n:
        raise DigitalInputError(f"{name} has {lab.shape[0]} entries but there are {n} images")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        if not np.issubdtype(lab.dtype, np.floating) or not np.all(lab == np.round(lab)):
            raise DigitalInputError(f"{name} must be integer class indices, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= N_CLASSES):
        raise DigitalInputError(
            f"{name} must lie in 0..{N_CLASSES - 1}, got values in [{lab.min()}, {lab.max()}]"
        )
    return lab


def validate_targets(targets: Any, n: int, embedding_dim: int) -> np.ndarray:
    """Return target embeddings as float64 ``(n, embedding_dim)``, or raise a ValueError."""
    t = np.asarray(targets, dtype=np.float64)
    if t.shape != (n, embedding_dim):
        raise DigitalInputError(
            f"target_embeddings must have shape ({n}, {embedding_dim}) "
            f"(N images x embedding_dim), got shape {t.shape}"
        )
    if not np.all(np.isfinite(t)):
        raise DigitalInputError("target_embeddings contains NaN or infinite values")
    return t
