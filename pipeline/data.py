"""Data sets: Fashion-MNIST from local gzip IDX files (verified), iris and wine from
scikit-learn, xor generated; seeded, stratified train / validation / test splits."""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "MIXSIG_FASHION_MNIST_DIR"
# sha256 of the files of Debian's dataset-fashion-mnist package (the Zalando release files)
FASHION_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", 2051, (60000, 28, 28),
                     "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
    "train_labels": ("train-labels-idx1-ubyte.gz", 2049, (60000,),
                     "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
    "test_images": ("t10k-images-idx3-ubyte.gz", 2051, (10000, 28, 28),
                    "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", 2049, (10000,),
                    "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
HOW_TO_GET = (f"install it with `apt-get install dataset-fashion-mnist` (files in {DEFAULT_FASHION_DIR}), "
              f"or point {ENV_VAR} or the config key data.path to a folder with the four gzip IDX files")


class DataError(Exception):
    """A data file is missing or corrupt, or a data request cannot be met."""


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    class_names: list

    def summary(self) -> str:
        return (f"{self.name}: train {self.x_train.shape}, validation {self.x_val.shape}, test {self.x_test.shape}, "
                f"{self.n_classes} classes")


def _read_idx(path: Path, magic: int, shape: tuple, sha256: str | None) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"Fashion-MNIST file {path} is missing; {HOW_TO_GET}")
    raw = path.read_bytes()
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise DataError(f"Fashion-MNIST file {path} is corrupt (sha256 {hashlib.sha256(raw).hexdigest()[:16]}… "
                        f"does not match the release's {sha256[:16]}…); {HOW_TO_GET}")
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"Fashion-MNIST file {path} is not a valid gzip file ({exc}); {HOW_TO_GET}") from None
    header = 8 if len(shape) == 1 else 16
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise DataError(f"Fashion-MNIST file {path} has a bad IDX magic number "
                        f"({int.from_bytes(data[:4], 'big') if len(data) >= 4 else 'none'}, expected {magic}); {HOW_TO_GET}")
    dims = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(len(shape)))
    if dims != shape or len(data) != header + int(np.prod(shape)):
        raise DataError(f"Fashion-MNIST file {path} has shape {dims} and {len(data) - header} bytes of data, "
                        f"expected {shape}; {HOW_TO_GET}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def fashion_mnist_dir(path: str | None = None) -> Path:
    return Path(path or os.environ.get(ENV_VAR) or DEFAULT_FASHION_DIR)


def load_fashion_mnist(path: str | None = None, verify: bool = True):
    """(x_train, y_train, x_test, y_test) as uint8 arrays from the gzip IDX files."""
    folder = fashion_mnist_dir(path)
    if not folder.is_dir() and path is None and os.environ.get(ENV_VAR) is None:
        try:  # last resort where a network exists; never required
            import keras
            (xtr, ytr), (xte, yte) = keras.datasets.fashion_mnist.load_data()
            return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64)
        except Exception:
            pass
    out = {}
    for key, (fname, magic, shape, digest) in FASHION_FILES.items():
        out[key] = _read_idx(folder / fname, magic, shape, digest if verify else None)
    for key in ("train_labels", "test_labels"):
        if out[key].max() > 9:
            raise DataError(f"Fashion-MNIST file {folder / FASHION_FILES[key][0]} has label {out[key].max()} "
                            f"outside 0..9; {HOW_TO_GET}")
    return (out["train_images"], out["train_labels"].astype(np.int64),
            out["test_images"], out["test_labels"].astype(np.int64))


def make_xor(n: int = 200, noise: float = 0.1, seed: int = 0):
    """Two features in {−1, +1}² plus Gaussian noise; label = XOR of their signs."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(n, 2))
    x = (2.0 * corners - 1.0) + rng.normal(0.0, noise, size=(n, 2))
    return x, (corners[:, 0] ^ corners[:, 1]).astype(np.int64)


def _stratified_slice(x, y, limit, seed):
    if limit is None or limit >= len(x):
        return x, y
    from sklearn.model_selection import train_test_split
    x, _, y, _ = train_test_split(x, y, train_size=limit, stratify=y, random_state=seed)
    return x, y


def load_dataset(data_cfg: dict, seed: int = 0) -> Dataset:
    """The data set a config's `data` section names, split and (optionally) sliced."""
    from sklearn.model_selection import train_test_split
    name = data_cfg["dataset"]
    val_frac = data_cfg.get("validation_fraction", 0.1)
    if name == "fashion_mnist":
        xtr, ytr, xte, yte = load_fashion_mnist(data_cfg.get("path"))
        xtr, ytr = _stratified_slice(xtr, ytr, data_cfg.get("limit_train"), seed)
        xte, yte = _stratified_slice(xte, yte, data_cfg.get("limit_test"), seed)
        xtr, xva, ytr, yva = train_test_split(xtr, ytr, test_size=val_frac, stratify=ytr, random_state=seed)
        return Dataset(name, xtr, ytr, xva, yva, xte, yte, 10, FASHION_CLASSES)
    if name in ("iris", "wine"):
        from sklearn import datasets
        bunch = getattr(datasets, f"load_{name}")()
        x, y, classes = bunch.data.astype(float), bunch.target.astype(np.int64), list(bunch.target_names)
    elif name == "xor":
        x, y = make_xor(data_cfg.get("xor_samples", 200), data_cfg.get("xor_noise", 0.1), seed)
        classes = ["0", "1"]
    else:
        raise DataError(f"data.dataset={name!r} is not one of fashion_mnist, iris, wine, xor")
    test_frac = data_cfg.get("test_fraction", 0.2)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_frac, stratify=y, random_state=seed)
    xtr, xva, ytr, yva = train_test_split(xtr, ytr, test_size=val_frac, stratify=ytr, random_state=seed)
    xtr, ytr = _stratified_slice(xtr, ytr, data_cfg.get("limit_train"), seed)
    return Dataset(name, xtr, ytr, xva, yva, xte, yte, len(classes), classes)


def tabular_to_volts(train: np.ndarray, *others: np.ndarray, amplitude: float = 1.0):
    """Standardise features on the training set, then map ±3σ onto ±amplitude volts (clipped)."""
    mu, sd = train.mean(0), train.std(0) + 1e-12
    return [np.clip((a - mu) / (3.0 * sd), -1.0, 1.0) * amplitude for a in (train, *others)]
