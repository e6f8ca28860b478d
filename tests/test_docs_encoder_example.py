"""The worked example of docs/encoders.md, extracted from the page and run: the encoder it
shows must honour digital's contract, learn, save and load, and the page's usage snippet
must run as written. If the page or the contract changes so that they disagree, this fails."""
from __future__ import annotations

import gzip
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from digital import EncoderContractError, check_encoder, load_encoder, make_encoder

DOC = Path(__file__).resolve().parents[1] / "docs" / "encoders.md"
MODULE = "my_encoders"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _block(first_line_start: str) -> str:
    found = [b for b in _python_blocks() if b.lstrip().startswith(first_line_start)]
    assert len(found) == 1, f"docs/encoders.md should hold exactly one python block starting {first_line_start!r}"
    return found[0]


@pytest.fixture
def example(tmp_path, monkeypatch):
    """The page's example module, importable as `my_encoders`; cwd is tmp_path."""
    (tmp_path / f"{MODULE}.py").write_text(_block(f"# {MODULE}.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop(MODULE, None)
    yield f"{MODULE}:RandomFeatureEncoder"
    sys.modules.pop(MODULE, None)


def _read_idx(path: Path, n: int) -> np.ndarray:
    """First n records of a gzipped IDX file, read here independently of pipeline/data.py."""
    with gzip.open(path, "rb") as fh:
        magic = int.from_bytes(fh.read(4), "big")
        dims = [int.from_bytes(fh.read(4), "big") for _ in range(magic & 0xFF)]
        per = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        data = np.frombuffer(fh.read(n * per), dtype=np.uint8)
    return data.reshape([n] + dims[1:])


def _images(n_train: int, n_test: int):
    """A Fashion-MNIST slice when the files are there; else synthetic images whose class is
    a bright horizontal band at a class-dependent height (separable, with pixel noise)."""
    folder = Path(os.environ.get("MIXSIG_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    if (folder / "train-images-idx3-ubyte.gz").exists():
        n = n_train + n_test
        x = _read_idx(folder / "train-images-idx3-ubyte.gz", n)
        y = _read_idx(folder / "train-labels-idx1-ubyte.gz", n).astype(np.int64)
        return x[:n_train], y[:n_train], x[n_train:], y[n_train:], "fashion"
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n_train + n_test)
    x = rng.integers(0, 60, size=(len(y), 28, 28))
    for i, c in enumerate(y):
        x[i, 2 + 2 * c: 4 + 2 * c, :] = 230
    x = x.astype(np.uint8)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], "synthetic"


def test_example_is_built_by_the_registry_and_meets_the_contract(example):
    x, y, _, _, _ = _images(60, 0)
    enc = make_encoder(example, embedding_dim=12, v_low=-0.5, v_high=0.25, seed=3, scale=2.0)
    assert type(enc).__name__ == "RandomFeatureEncoder"
    assert enc.get_params() == {"embedding_dim": 12, "v_low": -0.5, "v_high": 0.25, "seed": 3,
                                "scale": 2.0, "ridge": 1.0}
    volts = check_encoder(enc, x, 12, -0.5, 0.25)
    assert volts.shape == (60, 12) and volts.min() >= -0.5 and volts.max() <= 0.25
    # the stated formula, recomputed here from the encoder's arrays
    flat = x.reshape(60, -1) / 255.0
    expect = -0.125 + 0.375 * np.tanh(2.0 * (flat @ enc.P_ + enc.b_))
    np.testing.assert_allclose(volts, np.clip(expect, -0.5, 0.25), atol=1e-5)
    # a constructor argument the example refuses, and a config that does not fit it
    with pytest.raises(ValueError, match="scale must be a number > 0"):
        make_encoder(example, scale=-1.0)
    with pytest.raises(EncoderContractError, match="embedding_dim is 12 but 150 is required"):
        check_encoder(enc, x, 150, -0.5, 0.25)


def test_example_learns_saves_and_loads(example, tmp_path):
    x, y, xt, yt, source = _images(2000, 1000)
    enc = make_encoder(example, embedding_dim=64, seed=0, scale=2.0)
    enc.fit(x, y)
    acc = float(np.mean(enc.predict_classes(xt) == yt))      # counted here, not by evaluate()
    # measured: 0.731 on this Fashion slice (chance 0.1); the synthetic bands are separable
    assert acc >= (0.6 if source == "fashion" else 0.95), acc
    assert enc.evaluate(xt, yt) == pytest.approx(acc)
    folder = enc.save(tmp_path / "enc")
    manifest = json.loads((folder / "encoder.json").read_text())
    assert manifest["class"] == example and manifest["params"]["scale"] == 2.0
    back = load_encoder(folder)
    assert type(back).__name__ == "RandomFeatureEncoder" and back.get_params() == enc.get_params()
    np.testing.assert_array_equal(back.embed(xt[:100]), enc.embed(xt[:100]))
    np.testing.assert_array_equal(back.predict_classes(xt), enc.predict_classes(xt))


def test_example_fit_targets_moves_the_embedding_to_the_targets(example):
    x, y, _, _, _ = _images(300, 0)
    enc = make_encoder(example, embedding_dim=10, seed=1, ridge=1e-3).fit(x, y)
    before = enc.embed(x)
    targets = np.clip(before + np.random.default_rng(2).normal(0, 0.2, before.shape), -0.9, 0.9)
    mse_before = float(np.mean((before - targets) ** 2))
    enc.fit_targets(x, targets, y, class_weight=0.1)
    mse_after = float(np.mean((enc.embed(x) - targets) ** 2))
    assert mse_after < 0.05 * mse_before, (mse_before, mse_after)
    assert enc.history_["target_mse"] == [pytest.approx(mse_after)]
    with pytest.raises(ValueError, match=r"target_embeddings must have shape \(300, 10\)"):
        enc.fit_targets(x, targets[:, :3])


def test_usage_snippet_runs_as_written(example, tmp_path):
    snippet = _block("import numpy as np\nfrom digital import check_encoder")
    exec(compile(snippet, "docs/encoders.md", "exec"), {})
    assert (tmp_path / "runs" / "my_encoder" / "encoder.json").is_file()


def test_example_through_a_config_as_the_page_shows(example):
    """The config snippet at the top of the page: digital.params reaches the constructor,
    the pipeline's pre-flight check builds and embeds with it, a misspelt key is named."""
    from pipeline.system import build
    from pipeline.config import load_config

    snippet = re.search(r"```yaml\n(digital:.*?)```", DOC.read_text(), flags=re.S).group(1)
    assert f"encoder: {example}" in snippet and "params: {scale: 2.0}" in snippet
    smoke = Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml"
    cfg = load_config(smoke, [f"digital.encoder={example}", "digital.embedding_dim=20", "digital.params={scale: 2.0}"])
    enc = build.encoder(cfg)
    assert type(enc).__name__ == "RandomFeatureEncoder"
    assert (enc.embedding_dim, enc.scale, enc.seed) == (20, 2.0, cfg.seed)
    if Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists() or os.environ.get(
            "MIXSIG_FASHION_MNIST_DIR"):
        build.check_configured_encoder(cfg, sample=100)      # raises ValueError on a contract breach
    bad = load_config(smoke, [f"digital.encoder={example}", "digital.params={scael: 2.0}"])
    with pytest.raises(ValueError, match="digital.params.scael"):
        build.encoder(bad)
