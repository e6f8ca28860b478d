"""Images a user gives, as the encoder was trained on them: uint8 (N, 28, 28), 0 black, 255 white.

The rule (docs/serving.md):

  arrays (.npy, or the MLflow model's input)  (N, 28, 28) or (N, 28, 28, 1), one image may
      be (28, 28); integers must lie in 0..255; floats whose maximum is at most 1 are taken
      as 0..1 and scaled by 255 (the encoder's own rule), other floats as 0..255; values
      are rounded to the nearest integer. Colour arrays are refused: convert them first.
  IDX files (gzip or not)  the images format of Fashion-MNIST: magic 2051, uint8 N×28×28.
  a folder of .png/.jpg/.jpeg files  each converted to 8-bit grey (Pillow's "L": ITU-R 601
      luma), its longer side scaled to 28 pixels (Lanczos), centred on a black 28×28 canvas,
      like Fashion-MNIST's own preparation. Fashion-MNIST shows light objects on black; a
      photo of a dark object on white is not inverted.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from pipeline.errors import InputError

SIDE = 28
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IDX_IMAGES_MAGIC = 2051


class ServingInputError(InputError):
    """Images or a request the system cannot classify (one line naming the problem)."""


def to_pixels(arr, what: str = "images") -> np.ndarray:
    """An array of grey images as uint8 (N, 28, 28), by the rule above."""
    a = np.asarray(arr)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ServingInputError(f"{what}: dtype {a.dtype} is not numeric")
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 4:
        raise ServingInputError(f"{what}: shape {a.shape} has {a.shape[-1]} channels; the encoder takes grey "
                                f"images (N, {SIDE}, {SIDE}) or (N, {SIDE}, {SIDE}, 1)")
    if a.ndim != 3 or a.shape[1:] != (SIDE, SIDE):
        raise ServingInputError(f"{what}: shape {a.shape}; the encoder takes (N, {SIDE}, {SIDE}) or "
                                f"(N, {SIDE}, {SIDE}, 1) images")
    if not len(a):
        raise ServingInputError(f"{what}: no images (shape {a.shape})")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ServingInputError(f"{what}: NaN or infinite pixel values")
        a = a * 255.0 if a.max() <= 1.0 else a
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 255.5:
        raise ServingInputError(f"{what}: pixel values in [{lo:g}, {hi:g}], expected 0..255 (or floats in 0..1)")
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ServingInputError(f"{path}: not a readable .npy array ({' '.join(str(exc).split())[:160]})") from None
    if not isinstance(arr, np.ndarray):
        raise ServingInputError(f"{path}: an .npz archive, not one .npy array")
    return to_pixels(arr, str(path))


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX images file, gzip-compressed or not."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ServingInputError(f"{path}: corrupt gzip file ({exc})") from None
    magic = int.from_bytes(data[:4], "big") if len(data) >= 16 else None
    if magic != IDX_IMAGES_MAGIC:
        raise ServingInputError(f"{path}: not an IDX images file (magic number {magic}, expected "
                                f"{IDX_IMAGES_MAGIC})")
    n, rows, cols = (int.from_bytes(data[4 * k: 4 * k + 4], "big") for k in (1, 2, 3))
    if len(data) != 16 + n * rows * cols:
        raise ServingInputError(f"{path}: IDX header says {n}×{rows}×{cols} images but the file holds "
                                f"{len(data) - 16} bytes of pixels")
    return to_pixels(np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols), str(path))


def read_image_file(path: Path) -> np.ndarray:
    """One PNG/JPEG file as a uint8 28×28 grey image (the rule in the module docstring)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            grey = img.convert("L")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ServingInputError(f"{path}: not a readable image ({' '.join(str(exc).split())[:160]})") from None
    w, h = grey.size
    scale = SIDE / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = grey.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (SIDE, SIDE), 0)
    canvas.paste(small, ((SIDE - size[0]) // 2, (SIDE - size[1]) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def read_folder(path: Path) -> tuple[list[str], np.ndarray]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ServingInputError(f"{path}: no {'/'.join(s[1:].upper() for s in IMAGE_SUFFIXES)} files in the folder")
    return [p.name for p in files], np.stack([read_image_file(p) for p in files])


def read_input(path) -> tuple[list[str], np.ndarray]:
    """(names, uint8 (N, 28, 28) images) of INPUT: a folder (names: file names) or a .npy or
    IDX file (names: indices)."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path)
    if not path.is_file():
        raise ServingInputError(f"{path}: no such file or folder")
    name = path.name.lower()
    if name.endswith(".npy"):
        images = read_npy(path)
    elif "idx" in name or name.endswith(".gz"):
        images = read_idx_images(path)
    elif name.endswith(IMAGE_SUFFIXES):
        return [path.name], read_image_file(path)[None]
    else:
        raise ServingInputError(f"{path}: expected a .npy array, an IDX images file (name with 'idx', or .gz), "
                                f"a PNG/JPEG file or a folder of them")
    return [str(i) for i in range(len(images))], images
