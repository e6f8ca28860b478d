"""The serving input rule (pipeline/serving/images.py): arrays, IDX files and PNG/JPEG folders
become uint8 (N, 28, 28) images; everything else is one error naming the file or the shape.
Checked against arrays and files built by hand here, without a trained system."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.serving.images import ServingInputError, read_idx_images, read_image_file, read_input, to_pixels
from pipeline.serving.system import MixedSignalSystem, request_of_params

RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


def test_arrays_take_the_encoders_rule():
    assert np.array_equal(to_pixels(IMAGES), IMAGES)
    assert np.array_equal(to_pixels(IMAGES[..., None]), IMAGES)             # (N, 28, 28, 1)
    assert np.array_equal(to_pixels(IMAGES[0]), IMAGES[:1])                 # one image
    assert np.array_equal(to_pixels(IMAGES.astype(np.float64)), IMAGES)     # floats on 0..255
    unit = np.array([[0.0, 0.5, 1.0] + [0.0] * 25] * 28)
    got = to_pixels(unit)[0, 0, :3]
    assert got.tolist() == [0, 128, 255]                  # 0..1 floats scaled by 255: 127.5 rounds to 128


@pytest.mark.parametrize("arr, words", [
    (np.zeros((2, 28, 28, 3), np.uint8), "3 channels"),
    (np.zeros((2, 32, 32), np.uint8), "shape (2, 32, 32)"),
    (np.zeros((0, 28, 28), np.uint8), "no images"),
    (np.full((1, 28, 28), 300), "0..255"),
    (np.full((1, 28, 28), -1.0), "0..255"),
    (np.full((1, 28, 28), np.nan), "NaN"),
    (np.array([["a"] * 28] * 28), "not numeric"),
])
def test_arrays_refused_with_what_is_wrong(arr, words):
    with pytest.raises(ServingInputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        to_pixels(arr, "x.npy")


def _idx(images: np.ndarray, magic: int = 2051) -> bytes:
    return struct.pack(">IIII", magic, *images.shape) + images.tobytes()


def test_idx_files_gzip_or_not(tmp_path):
    raw, gz = tmp_path / "imgs-idx3-ubyte", tmp_path / "imgs-idx3-ubyte.gz"
    raw.write_bytes(_idx(IMAGES))
    gz.write_bytes(gzip.compress(_idx(IMAGES)))
    assert np.array_equal(read_idx_images(raw), IMAGES)
    names, got = read_input(gz)
    assert names == ["0", "1", "2", "3", "4"] and np.array_equal(got, IMAGES)


def test_idx_files_refused(tmp_path):
    labels = tmp_path / "labels-idx1-ubyte"
    labels.write_bytes(_idx(IMAGES, magic=2049))
    with pytest.raises(ServingInputError, match="magic number 2049"):
        read_idx_images(labels)
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(_idx(IMAGES)[:-10])
    with pytest.raises(ServingInputError, match="5×28×28 images but the file holds 3910"):
        read_idx_images(short)
    bad_gz = tmp_path / "bad-idx3-ubyte.gz"
    bad_gz.write_bytes(gzip.compress(_idx(IMAGES))[:40])
    with pytest.raises(ServingInputError, match="corrupt gzip"):
        read_idx_images(bad_gz)


def test_png_at_28_pixels_is_read_exactly(tmp_path):
    Image.fromarray(IMAGES[0]).save(tmp_path / "a.png")
    assert np.array_equal(read_image_file(tmp_path / "a.png"), IMAGES[0])


def test_colour_and_larger_images_are_made_grey_and_scaled(tmp_path):
    # a grey image upscaled 2x (each pixel a 2x2 block), stored as RGB: back to 28 px it is the
    # original up to the Lanczos filter's ringing at the edges of the blocks
    smooth = np.clip(np.add.outer(np.arange(28) * 9, np.arange(28) * 0), 0, 255).astype(np.uint8)
    big = np.kron(smooth, np.ones((2, 2), np.uint8))
    Image.fromarray(big).convert("RGB").save(tmp_path / "big.png")
    got = read_image_file(tmp_path / "big.png").astype(int)
    assert np.abs(got - smooth).max() <= 2
    # pure red → ITU-R 601 luma 0.299 * 255 = 76.2
    Image.new("RGB", (28, 28), (255, 0, 0)).save(tmp_path / "red.png")
    assert np.all(read_image_file(tmp_path / "red.png") == 76)


def test_wide_images_are_centred_on_black(tmp_path):
    strip = np.full((14, 28), 200, np.uint8)           # 28 wide, 14 high: 7 black rows above and below
    Image.fromarray(strip).save(tmp_path / "wide.png")
    got = read_image_file(tmp_path / "wide.png")
    assert np.all(got[:7] == 0) and np.all(got[21:] == 0) and np.all(got[7:21] == 200)


def test_folders(tmp_path):
    for i in (2, 0, 1):
        Image.fromarray(IMAGES[i]).save(tmp_path / f"img{i}.png")
    Image.fromarray(IMAGES[3]).save(tmp_path / "img3.JPG")
    (tmp_path / "notes.txt").write_text("not an image, not read")
    names, got = read_input(tmp_path)
    assert names == ["img0.png", "img1.png", "img2.png", "img3.JPG"]
    assert np.array_equal(got[:3], IMAGES[:3]) and got.shape == (4, 28, 28)
    (tmp_path / "img9.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ServingInputError, match="img9.png: not a readable image"):
        read_input(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ServingInputError, match="no PNG/JPG/JPEG files"):
        read_input(empty)


def test_requests_checked_before_any_solve():
    system = MixedSignalSystem({"classes": list("abc"), "source_run": "r1"}, analog=None, chips=[None, None])
    system.check_request(1, 3600.0, "native")
    for args, words in [((2, None, "native"), "has 2 chip"), ((0, -1.0, "native"), "before programming"),
                        ((None, 5.0, "native"), "needs a chip"), ((None, None, "spectre"), "engine 'spectre'")]:
        with pytest.raises(ServingInputError, match=words):
            system.check_request(*args)
    bare = MixedSignalSystem({"classes": list("abc"), "source_run": "r1"}, analog=None)
    with pytest.raises(ServingInputError, match="no programmed chips"):
        bare.check_request(0, None, "native")
    assert request_of_params(None) == (None, None, "native")
    assert request_of_params({"chip": 1, "time": 0.0}) == (1, 0.0, "native")
    assert request_of_params({"chip": -1, "time": 60.0, "engine": "ngspice"}) == (None, 60.0, "ngspice")


@pytest.mark.parametrize("make, words", [
    (lambda p: np.save(p / "rgb.npy", np.zeros((2, 28, 28, 3), np.uint8)) or p / "rgb.npy", "3 channels"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no PNG/JPG/JPEG files"),
    (lambda p: (p / "x.png").write_bytes(b"junk") and p / "x.png", "x.png: not a readable image"),
    (lambda p: p / "missing.npy", "no such file or folder"),
])
def test_cli_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, make, words):
    src, out = make(tmp_path), tmp_path / "out.csv"
    assert main(["predict", "abcd1234", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err, err
    assert not out.exists()
