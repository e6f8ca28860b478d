"""pipeline.data: Fashion-MNIST from the IDX files (verified), tabular sets, seeded stratified splits."""
import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import data
from pipeline.data import DataError, load_dataset, load_fashion_mnist, make_xor

SYSTEM_DIR = Path(data.DEFAULT_FASHION_DIR)
needs_files = pytest.mark.skipif(not (SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="dataset-fashion-mnist is not installed")
FILES = [spec[0] for spec in data.FASHION_FILES.values()]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def fashion():
    return load_fashion_mnist(str(SYSTEM_DIR))


@pytest.fixture
def copy_dir(tmp_path):
    """A folder holding the four files (symlinks); tests replace the one they damage."""
    folder = tmp_path / "fm"
    folder.mkdir()
    for name in FILES:
        (folder / name).symlink_to(SYSTEM_DIR / name)
    return folder


def _replace(folder: Path, name: str, content: bytes) -> Path:
    target = folder / name
    target.unlink()
    target.write_bytes(content)
    return target


@needs_files
def test_real_files_shapes_dtype_and_label_counts(fashion):
    xtr, ytr, xte, yte = fashion
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert xtr.dtype == np.uint8 and xte.dtype == np.uint8
    assert ytr.shape == (60000,) and yte.shape == (10000,)
    assert np.bincount(ytr).tolist() == [6000] * 10
    assert np.bincount(yte).tolist() == [1000] * 10
    assert xtr.max() == 255 and xtr.min() == 0


@needs_files
def test_fashion_dataset_keeps_official_test_set_and_slices_stratified(fashion):
    ds = load_dataset({"dataset": "fashion_mnist", "validation_fraction": 0.1, "limit_train": 1000,
                       "limit_test": 200}, seed=3)
    assert ds.name == "fashion_mnist" and ds.n_classes == 10 and len(ds.class_names) == 10
    assert len(ds.x_train) + len(ds.x_val) == 1000 and len(ds.x_val) == 100
    assert ds.x_test.shape == (200, 28, 28) and ds.x_train.dtype == np.uint8
    assert np.bincount(ds.y_train, minlength=10).tolist() == [90] * 10
    assert np.bincount(ds.y_test, minlength=10).tolist() == [20] * 10
    # the test slice comes from the official test set
    test_rows = {x.tobytes() for x in fashion[2]}
    assert all(x.tobytes() in test_rows for x in ds.x_test[:20])


@needs_files
def test_missing_file_names_it_and_how_to_get_it(copy_dir):
    (copy_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_fashion_mnist(str(copy_dir))
    msg = str(err.value)
    assert str(copy_dir / "t10k-labels-idx1-ubyte.gz") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and data.ENV_VAR in msg and "data.path" in msg


@needs_files
def test_truncated_file_is_corrupt(copy_dir):
    name = "train-labels-idx1-ubyte.gz"
    path = _replace(copy_dir, name, (SYSTEM_DIR / name).read_bytes()[:5000])
    with pytest.raises(DataError, match="corrupt") as err:
        load_fashion_mnist(str(copy_dir))
    assert str(path) in str(err.value)


@needs_files
def test_flipped_bytes_are_corrupt(copy_dir):
    name = "t10k-labels-idx1-ubyte.gz"
    raw = bytearray((SYSTEM_DIR / name).read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 8):
        raw[i] ^= 0xFF
    path = _replace(copy_dir, name, bytes(raw))
    with pytest.raises(DataError, match="corrupt") as err:
        load_fashion_mnist(str(copy_dir))
    assert str(path) in str(err.value)


@needs_files
def test_valid_gzip_with_other_content_fails_sha256_and_label_range(copy_dir):
    name = "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress((SYSTEM_DIR / name).read_bytes()))
    payload[8] = 12  # a label outside 0..9
    path = _replace(copy_dir, name, gzip.compress(bytes(payload)))
    with pytest.raises(DataError, match="sha256") as err:
        load_fashion_mnist(str(copy_dir))
    assert str(path) in str(err.value)
    with pytest.raises(DataError, match="outside 0..9") as err:
        load_fashion_mnist(str(copy_dir), verify=False)
    assert str(path) in str(err.value)


@needs_files
def test_wrong_magic_number(copy_dir):
    name = "train-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress((SYSTEM_DIR / name).read_bytes()))
    payload[3] = 0x03  # 2049 -> 2051
    path = _replace(copy_dir, name, gzip.compress(bytes(payload)))
    with pytest.raises(DataError, match="magic number 2051, expected 2049") as err:
        load_fashion_mnist(str(copy_dir), verify=False)
    assert str(path) in str(err.value)


@needs_files
def test_short_image_file_gives_expected_and_found_byte_counts(copy_dir):
    name = "t10k-labels-idx1-ubyte.gz"
    payload = gzip.decompress((SYSTEM_DIR / name).read_bytes())[:-5]   # five labels missing
    path = _replace(copy_dir, name, gzip.compress(payload))
    with pytest.raises(DataError, match="with 9995 data bytes, expected shape \\(10000,\\) with 10000") as err:
        load_fashion_mnist(str(copy_dir), verify=False)
    assert str(path) in str(err.value)


@needs_files
def test_recompressed_copy_passes_verification(copy_dir):
    """The check is on the content, so a copy with other gzip framing (e.g. upstream's) loads."""
    name = "t10k-labels-idx1-ubyte.gz"
    payload = gzip.decompress((SYSTEM_DIR / name).read_bytes())
    _replace(copy_dir, name, gzip.compress(payload, compresslevel=1, mtime=0))
    assert load_fashion_mnist(str(copy_dir))[3].shape == (10000,)


@needs_files
def test_env_var_overrides_default_and_path_overrides_env(copy_dir, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(data.ENV_VAR, str(empty))
    with pytest.raises(DataError) as err:  # the env var is used, not the system folder
        load_dataset({"dataset": "fashion_mnist"}, seed=0)
    assert str(empty) in str(err.value)
    ds = load_dataset({"dataset": "fashion_mnist", "path": str(copy_dir), "limit_train": 100, "limit_test": 50}, 0)
    assert ds.x_test.shape == (50, 28, 28)
    monkeypatch.setenv(data.ENV_VAR, str(copy_dir))
    assert data.fashion_mnist_dir() == copy_dir
    assert load_fashion_mnist()[0].shape == (60000, 28, 28)


@pytest.mark.parametrize("name,n_features,n_classes", [("iris", 4, 3), ("wine", 13, 3), ("xor", 2, 2)])
def test_tabular_splits_are_seeded_and_stratified(name, n_features, n_classes):
    cfg = {"dataset": name, "validation_fraction": 0.1, "test_fraction": 0.2, "xor_samples": 200, "xor_noise": 0.1}
    a, b, c = load_dataset(cfg, seed=1), load_dataset(cfg, seed=1), load_dataset(cfg, seed=2)
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.x_test, c.x_test)
    assert a.n_classes == n_classes == len(a.class_names) and a.x_train.shape[1] == n_features
    total = np.concatenate([a.y_train, a.y_val, a.y_test])
    overall = np.bincount(total) / len(total)
    for y in (a.y_train, a.y_val, a.y_test):
        share = np.bincount(y, minlength=n_classes) / len(y)
        assert np.all(np.abs(share - overall) <= 1.0 / len(y) + 1e-9)
    if name != "xor":  # standardised with the training split's statistics
        np.testing.assert_allclose(a.x_train.mean(0), 0, atol=1e-9)
        np.testing.assert_allclose(a.x_train.std(0), 1, atol=1e-9)


def test_tabular_limits_are_stratified_slices():
    ds = load_dataset({"dataset": "iris", "limit_train": 30, "limit_test": 15}, seed=0)
    assert len(ds.x_train) == 30 and len(ds.x_test) == 15
    assert np.bincount(ds.y_train).tolist() == [10, 10, 10]
    assert np.bincount(ds.y_test).tolist() == [5, 5, 5]


def test_make_xor_labels_follow_the_corners():
    x, y = make_xor(400, noise=0.05, seed=4)
    assert x.shape == (400, 2) and set(np.unique(y)) == {0, 1}
    np.testing.assert_array_equal(y, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int))
    np.testing.assert_array_equal(make_xor(50, 0.1, 7)[0], make_xor(50, 0.1, 7)[0])


def test_unknown_dataset_and_too_small_limit():
    with pytest.raises(DataError, match="mnist"):
        load_dataset({"dataset": "mnist"}, seed=0)
    with pytest.raises(DataError, match="limit_train"):
        load_dataset({"dataset": "iris", "limit_train": 2}, seed=0)
