"""Embeddings reused across stages (pipeline.flow.embedding_reuse) are exactly the encoder's."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.flow.embedding_reuse import embedding_arrays, matching, read_embeddings, save_embeddings


def _data(n=(96, 40, 48)):
    rng = np.random.default_rng(0)
    parts = {}
    for split, k in zip(("train", "val", "test"), n):
        parts[f"x_{split}"] = rng.integers(0, 256, size=(k, 28, 28)).astype(np.uint8)
        parts[f"y_{split}"] = rng.integers(0, 10, size=k)
    return SimpleNamespace(n_classes=10, **parts)


@pytest.fixture(scope="module")
def cnn():
    from digital import CNNEncoder
    enc = CNNEncoder(embedding_dim=12, filters=(4, 8), epochs=1, batch_size=32, embed_batch_size=16, seed=0)
    ds = _data()
    enc.fit(ds.x_train, ds.y_train, verbose=0)
    return enc, ds


def test_arrays_are_the_encoders_embeddings_per_split(cnn):
    enc, ds = cnn
    arrays = embedding_arrays(enc, ds, chunks=32)
    for split in ("train", "val", "test"):
        x = getattr(ds, f"x_{split}")
        assert arrays[f"x_{split}"].dtype == np.float32
        assert np.array_equal(arrays[f"x_{split}"], enc.embed(x).astype(np.float32))
        assert np.array_equal(arrays[f"y_{split}"], getattr(ds, f"y_{split}"))


def test_an_images_embedding_depends_on_its_batch_only_in_the_last_bits(cnn):
    """Reuse is exact because a stored set was computed in the same batches as the pass it
    replaces (whole splits in batches of embed_batch_size; chunks a multiple of it); across
    batch sizes an image's embedding agrees within the check's tolerance."""
    from pipeline.flow.embedding_reuse import TOLERANCE
    enc, ds = cnn
    whole = enc.embed(ds.x_train)
    assert np.array_equal(embedding_arrays(enc, ds, chunks=2 * enc.embed_batch_size)["x_train"],
                          whole.astype(np.float32))
    assert np.allclose(enc.embed(ds.x_train[:1]), whole[:1], rtol=0.0, atol=TOLERANCE / 10)
    assert np.allclose(enc.embed(ds.x_train[5:42]), whole[5:42], rtol=0.0, atol=TOLERANCE / 10)


def test_matching_accepts_its_own_and_rejects_others(cnn, tmp_path):
    from digital import CNNEncoder
    enc, ds = cnn
    arrays = embedding_arrays(enc, ds)
    save_embeddings(tmp_path, arrays)
    assert matching(read_embeddings(tmp_path), enc, ds) is not None
    other = CNNEncoder(embedding_dim=12, filters=(4, 8), epochs=1, batch_size=32, seed=1)
    other.fit(ds.x_train, ds.y_train, verbose=0)
    assert matching(arrays, other, ds) is None                       # another encoder's
    relabelled = dict(arrays, y_test=(arrays["y_test"] + 1) % 10)
    assert matching(relabelled, enc, ds) is None                     # another data set's labels
    assert matching(arrays, enc, _data((80, 40, 48))) is None        # another training set size
    assert matching(None, enc, ds) is None


def test_saving_read_arrays_links_the_file(cnn, tmp_path):
    enc, ds = cnn
    src, out = tmp_path / "a", tmp_path / "b"
    save_embeddings(src, embedding_arrays(enc, ds))
    save_embeddings(out, read_embeddings(src), source=src)
    assert (out / "embeddings.npz").read_bytes() == (src / "embeddings.npz").read_bytes()
    assert (out / "embeddings.npz").stat().st_nlink == 2
