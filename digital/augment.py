"""Data augmentation of training images: random translations and left-right mirror images."""

from __future__ import annotations

import numpy as np

MAX_SHIFT = 4   # pixels of random translation at most (of 28)


def augment_images(x: np.ndarray, rng: np.random.Generator, shift: int = 0, flip: bool = False) -> np.ndarray:
    """A randomly translated / mirrored copy of the images ``x`` (B, H, W[, C]): image b is
    moved by (dy_b, dx_b) pixels, each uniform in {-shift..shift} (content moves down/right
    for positive values; pixels moved in from outside are 0), then, if ``flip``, mirrored
    left-right with probability 1/2.  ``x`` is not changed."""
    x = np.asarray(x)
    b, h, w = x.shape[:3]
    if shift:
        pad = np.pad(x, [(0, 0), (shift, shift), (shift, shift)] + [(0, 0)] * (x.ndim - 3))
        dy = rng.integers(-shift, shift + 1, size=b)
        dx = rng.integers(-shift, shift + 1, size=b)
        rows = np.arange(h)[None, :] + shift - dy[:, None]          # out[r] = x[r - dy]
        cols = np.arange(w)[None, :] + shift - dx[:, None]
        out = pad[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]   # a new array
    else:
        out = x.copy()
    if flip:
        mirror = rng.random(b) < 0.5
        out[mirror] = out[mirror][:, :, ::-1]
    return out
