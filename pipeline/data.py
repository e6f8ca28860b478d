"""Data sets: Fashion-MNIST from local gzip IDX files (verified), iris and wine from
scikit-learn, xor generated; seeded, stratified train / validation / test splits.

`load_dataset(data_cfg, seed)` is the one entry point the pipeline uses.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import UserError

DEFAULT_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "MIXSIG_FASHION_MNIST_DIR"

# key: (file name, IDX magic, shape, sha256 of the DECOMPRESSED IDX payload).
# Digests computed from Debian's dataset-fashion-mnist files (0.0~git20200523.55506a9-1).
# Debian recompressed the .gz files, so the compressed bytes differ from Zalando's release
# (its .gz MD5s, e.g. 8d4fb7e6… for train images, do not match), but the decompressed
# payloads are identical to upstream: their MD5s equal the published upstream ones
# (f4a8712d…, 9018921c…, 8181f547…, 15d48437…). Checking the payload therefore accepts
# both the Debian files and a copy downloaded from Zalando.
FASHION_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", 2051, (60000, 28, 28),
                     "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": ("train-labels-idx1-ubyte.gz", 2049, (60000,),
                     "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": ("t10k-images-idx3-ubyte.gz", 2051, (10000, 28, 28),
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", 2049, (10000,),
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
DATASETS = ("fashion_mnist", "iris", "wine", "xor", "digits")
HOW_TO_GET = (f"install it with `apt-get install dataset-fashion-mnist` (files in {DEFAULT_FASHION_DIR}), "
              f"or point {ENV_VAR} or the config key data.path to a folder with the four gzip IDX files")


class DataError(UserError):
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


# ---------------------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------------------
def read_idx(path: Path, magic: int, shape: tuple, sha256: str | None = None) -> np.ndarray:
    """One gzip IDX file as a read-only uint8 array of `shape`; DataError if it is missing,
    not gzip, has the wrong magic number / shape, or (sha256 given) other content."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Fashion-MNIST file {path} is missing; {HOW_TO_GET}")
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"Fashion-MNIST file {path} is corrupt (not a valid gzip file: {exc}); {HOW_TO_GET}") from None
    header = 8 if len(shape) == 1 else 16
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if len(data) < header or found != magic:
        raise DataError(f"Fashion-MNIST file {path} is corrupt (IDX magic number {found}, expected {magic}); "
                        f"{HOW_TO_GET}")
    dims = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(len(shape)))
    if dims != tuple(shape) or len(data) != header + int(np.prod(shape)):
        raise DataError(f"Fashion-MNIST file {path} is corrupt (header shape {dims} with {len(data) - header} "
                        f"data bytes, expected shape {tuple(shape)} with {int(np.prod(shape))} data bytes); "
                        f"{HOW_TO_GET}")
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise DataError(f"Fashion-MNIST file {path} is corrupt (sha256 of its content {digest[:16]}… differs "
                            f"from the release's {sha256[:16]}…: damaged or modified); {HOW_TO_GET}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def fashion_mnist_dir(path: str | os.PathLike | None = None) -> Path:
    """Where the files are looked for: `path`, else $MIXSIG_FASHION_MNIST_DIR, else the Debian folder."""
    return Path(path or os.environ.get(ENV_VAR) or DEFAULT_FASHION_DIR)


def _keras_fallback():
    """Last resort when no local copy exists at all: Keras's downloader (needs a network)."""
    try:
        import keras
        (xtr, ytr), (xte, yte) = keras.datasets.fashion_mnist.load_data()
    except Exception:
        return None
    return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64)


def load_fashion_mnist(path: str | os.PathLike | None = None, verify: bool = True):
    """(x_train, y_train, x_test, y_test): images uint8 N×28×28, labels int64 in 0..9."""
    folder = fashion_mnist_dir(path)
    explicit = path is not None or os.environ.get(ENV_VAR) is not None
    if not explicit and not any((folder / f[0]).exists() for f in FASHION_FILES.values()):
        fallback = _keras_fallback()
        if fallback is not None:
            return fallback
    if explicit and not folder.is_dir():
        raise DataError(f"Fashion-MNIST folder {folder} does not exist; {HOW_TO_GET}")
    out = {}
    for key, (fname, magic, shape, digest) in FASHION_FILES.items():
        out[key] = read_idx(folder / fname, magic, shape, digest if verify else None)
    for key in ("train_labels", "test_labels"):
        if out[key].max() > 9:
            raise DataError(f"Fashion-MNIST file {folder / FASHION_FILES[key][0]} is corrupt (label "
                            f"{int(out[key].max())} outside 0..9); {HOW_TO_GET}")
    return (out["train_images"], out["train_labels"].astype(np.int64),
            out["test_images"], out["test_labels"].astype(np.int64))


# ---------------------------------------------------------------------------------------
# small tabular sets
# ---------------------------------------------------------------------------------------
def _sklearn_set(name: str):
    from sklearn import datasets
    bunch = getattr(datasets, f"load_{name}")()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64), [str(c) for c in bunch.target_names]


def load_iris():
    """(x, y, class_names): 150 × 4 raw features, 3 classes (load_dataset standardises)."""
    return _sklearn_set("iris")


def load_wine():
    """(x, y, class_names): 178 × 13 raw features, 3 classes (load_dataset standardises)."""
    return _sklearn_set("wine")


def load_digits():
    """(x, y, class_names): scikit-learn's 1797 × 64 handwritten digits (8 × 8 pixels, row-major,
    values 0..16), 10 classes; bundled with scikit-learn, no download (load_dataset standardises)."""
    return _sklearn_set("digits")


def make_xor(n: int = 200, noise: float = 0.1, seed: int = 0):
    """Two features at the corners of {−1, +1}² plus Gaussian noise; label = XOR of their signs."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(n, 2))
    x = (2.0 * corners - 1.0) + rng.normal(0.0, noise, size=(n, 2))
    return x, (corners[:, 0] ^ corners[:, 1]).astype(np.int64)


def standardize(train: np.ndarray, *others: np.ndarray) -> list:
    """z-score every array with the training set's mean and standard deviation."""
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(a - mu) / sd for a in (train, *others)]


# ---------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------
def _stratified_slice(x, y, limit, seed, what):
    if limit is None or limit >= len(x):
        return x, y
    n_classes = len(np.unique(y))
    if limit < n_classes:
        raise DataError(f"data.{what}={limit} is smaller than the number of classes ({n_classes})")
    from sklearn.model_selection import train_test_split
    x, _, y, _ = train_test_split(x, y, train_size=limit, stratify=y, random_state=seed)
    return x, y


def _split(x, y, fraction, seed, what):
    from sklearn.model_selection import train_test_split
    try:
        return train_test_split(x, y, test_size=fraction, stratify=y, random_state=seed)
    except ValueError as exc:
        raise DataError(f"cannot carve a stratified {what} split of {fraction} from {len(x)} samples: {exc}") from None


def load_dataset(data_cfg, seed: int = 0) -> Dataset:
    """The data set a config's `data` section (a DataConfig) names, split and (optionally)
    sliced; a plain mapping, as library callers give it, is read with the section's defaults.

    fashion_mnist: official test set kept; validation carved from train (stratified);
    images stay uint8 N×28×28. iris / wine / xor: stratified test, then validation split;
    features standardised with the training split's statistics. limit_train / limit_test
    take a stratified slice (limit_train applies before the validation split for images).
    Same config and seed → identical arrays.
    """
    from pipeline.config.schema import DataConfig
    d = data_cfg if isinstance(data_cfg, DataConfig) else DataConfig.model_construct(**data_cfg)
    name, val_frac, limit_train, limit_test = d.dataset, d.validation_fraction, d.limit_train, d.limit_test
    if name == "fashion_mnist":
        xtr, ytr, xte, yte = load_fashion_mnist(d.path)
        xtr, ytr = _stratified_slice(xtr, ytr, limit_train, seed, "limit_train")
        xte, yte = _stratified_slice(xte, yte, limit_test, seed, "limit_test")
        xtr, xva, ytr, yva = _split(xtr, ytr, val_frac, seed, "validation")
        return Dataset(name, xtr, ytr, xva, yva, xte, yte, 10, list(FASHION_CLASSES))
    if name == "iris":
        x, y, classes = load_iris()
    elif name == "wine":
        x, y, classes = load_wine()
    elif name == "digits":
        x, y, classes = load_digits()
    elif name == "xor":
        x, y = make_xor(d.xor_samples, d.xor_noise, seed)
        classes = ["0", "1"]
    else:
        raise DataError(f"data.dataset={name!r} is not one of {', '.join(DATASETS)}")
    xtr, xte, ytr, yte = _split(x, y, d.test_fraction, seed, "test")
    xtr, xva, ytr, yva = _split(xtr, ytr, val_frac, seed, "validation")
    xtr, ytr = _stratified_slice(xtr, ytr, limit_train, seed, "limit_train")
    xte, yte = _stratified_slice(xte, yte, limit_test, seed, "limit_test")
    if name != "xor":
        xtr, xva, xte = standardize(xtr, xva, xte)
    return Dataset(name, xtr, ytr, xva, yva, xte, yte, len(classes), classes)


def tabular_to_volts(train: np.ndarray, *others: np.ndarray, amplitude: float = 1.0):
    """Standardise features on the training set, then map ±3σ onto ±amplitude volts (clipped)."""
    mu, sd = train.mean(0), train.std(0) + 1e-12
    return [np.clip((a - mu) / (3.0 * sd), -1.0, 1.0) * amplitude for a in (train, *others)]
