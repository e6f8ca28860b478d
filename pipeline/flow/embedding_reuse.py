"""Embed the images once per encoder state.

A co-training round used to embed the 54,000 training images three times with the same
weights: in its embed stage, again at the start of retrain-digital (the embeddings before
retraining), and after retraining (the shift followed), which the next round's embed stage
then computed once more. Now retrain-digital takes the round's embeddings as an input and
outputs the retrained encoder's, which the next embed stage hands on.

Reuse is exact: a stored set is used only if it holds this config's data (sizes and labels
of every split) and the first images of every split embed to the same volts (within
TOLERANCE: an image's float32 embedding can differ in its last bits with the size of the
batch it is computed in, e.g. alone against within 1,024) with the encoder at hand;
otherwise the images are embedded again. The stored sets were computed in the same batches
as the passes they replace (whole splits in batches of the encoder's embed_batch_size, the
embed stage's chunks being a multiple of it), so they hold the values those passes gave.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.flow.artifacts import read_npz, save_npz

SPLITS = ("train", "val", "test")
CHECK = 32                           # images per split re-embedded to check a stored set
TOLERANCE = 1e-5                     # V: float32 rounding is ~1e-7 V; another encoder differs by far more


def embedding_arrays(enc, ds, chunks=None, bar=None) -> dict:
    """The embed stage's arrays: x_<split> (volts, float32: µV resolution, half the size),
    y_<split>, v_low, v_high, n_classes. `chunks` (default: whole splits) bounds how many
    images go to `enc.embed` at once; `bar` is updated with the images done."""
    arrays = {}
    for split in SPLITS:
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        step = chunks or max(1, len(x))
        parts = []
        for lo in range(0, len(x), step):
            parts.append(np.asarray(enc.embed(x[lo:lo + step])))
            if bar is not None:
                bar.update(len(parts[-1]))
        arrays[f"x_{split}"] = (np.concatenate(parts) if parts else np.zeros((0, enc.embedding_dim))).astype(np.float32)
        arrays[f"y_{split}"] = np.asarray(y, dtype=np.int64)
    arrays.update(v_low=np.array(enc.v_low), v_high=np.array(enc.v_high), n_classes=np.array(ds.n_classes))
    return arrays


def matching(arrays: dict | None, enc, ds) -> dict | None:
    """`arrays` if they are `enc`'s embeddings of `ds`'s images (see the module docstring), else None."""
    if arrays is None:
        return None
    for split in SPLITS:
        x, y = getattr(ds, f"x_{split}"), np.asarray(getattr(ds, f"y_{split}"), dtype=np.int64)
        e = arrays.get(f"x_{split}")
        if e is None or e.shape != (len(x), enc.embedding_dim) or not np.array_equal(arrays.get(f"y_{split}"), y):
            return None
        if len(x) and not np.allclose(enc.embed(x[:CHECK]), e[:CHECK], rtol=0.0, atol=TOLERANCE):
            return None
    return arrays


def read_embeddings(folder: Path) -> dict:
    """An embeddings artifact's arrays as stored (float32 volts)."""
    return read_npz("embeddings", folder)


def save_embeddings(out_folder: Path, arrays: dict, source: Path | None = None) -> None:
    """An embeddings artifact (embeddings.npz). `source`: the embeddings folder `arrays` were
    read from (None if computed); its file is then hard-linked (no second copy on disk) when
    the file system allows, else written."""
    Path(out_folder).mkdir(parents=True, exist_ok=True)
    out = Path(out_folder) / "embeddings.npz"
    if source is not None and not out.exists():
        try:
            os.link(Path(source) / "embeddings.npz", out)
            return
        except OSError:   # another file system, or links not allowed: write a copy
            pass
    save_npz(Path(out_folder), "embeddings.npz", **arrays)
