"""The analog block as the front end (issue 17 part 5): `digital.encoder: none` feeds the
image pixels, as volts, to a block whose first layer is locally connected; train-analog,
embed and evaluate run without an encoder, train-digital and cotrain refuse in one line."""
from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from tests.test_pipeline_smoke import FASHION, client_for, mixsig

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="Fashion-MNIST not available")]

CONFIG = {
    "name": "front_end", "seed": 0,
    "data": {"dataset": "fashion_mnist", "limit_train": 120, "limit_test": 40, "validation_fraction": 0.25},
    "analog": {"layers": [{"type": "locally_connected2d", "kernel": [7, 7], "strides": [7, 7], "filters": 1,
                           "input_shape": [28, 28, 1]}]},
    "digital": {"encoder": "none", "v_low": -0.5, "v_high": 0.75},
    "training": {"epochs": 1, "batch_size": 20, "beta": 1.0e-7},
    "cotrain": {"rounds": 0},
    "baseline": {"enabled": False},
}


def _run_id(stdout: str, stage: str) -> str:
    return re.search(rf"{stage} run ([0-9a-f]{{32}}) finished", stdout).group(1)


@pytest.fixture(scope="module")
def front_end(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("front_end")
    cfg = tmp / "front_end.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    return tmp, cfg


def test_train_analog_and_evaluate_without_an_encoder(front_end):
    tmp, cfg = front_end
    out = mixsig(tmp, "train-analog", cfg).stdout
    assert "new analog block 784→[16]→10" in out
    run = _run_id(out, "train-analog")
    ev = mixsig(tmp, "evaluate", cfg, "--from-run", run).stdout
    metrics = client_for(tmp).get_run(_run_id(ev, "evaluate")).data.metrics
    assert metrics["end_to_end_test_accuracy"] == metrics["analog_test_accuracy"]
    assert "digital_test_accuracy" not in metrics
    # the block trained on pixel volts: its test accuracy is what it scores on the pixels mapped here
    from analog import AnalogModel
    from pipeline.data import load_dataset
    model = AnalogModel.load(tmp / "runs" / run / "analog_model")
    ds = load_dataset(CONFIG["data"], seed=0)
    x = -0.5 + 1.25 * ds.x_test.reshape(len(ds.x_test), -1).astype(float) / 255.0
    assert model.scores(x, ds.y_test)["accuracy"] == pytest.approx(metrics["analog_test_accuracy"])


def test_embed_passes_the_pixels_as_volts(front_end):
    tmp, cfg = front_end
    out = mixsig(tmp, "embed", cfg).stdout
    run = _run_id(out, "embed")
    with np.load(tmp / "runs" / run / "embeddings" / "embeddings.npz") as z:
        x, v_low, v_high = z["x_train"], float(z["v_low"]), float(z["v_high"])
    from pipeline.data import load_dataset
    ds = load_dataset(CONFIG["data"], seed=0)
    expected = -0.5 + 1.25 * ds.x_train.reshape(len(ds.x_train), -1).astype(float) / 255.0   # 0 → v_low, 255 → v_high
    assert x.shape == (len(ds.x_train), 784) and (v_low, v_high) == (-0.5, 0.75)
    np.testing.assert_allclose(x, expected, atol=1e-6)
    mixsig(tmp, "train-analog", cfg, "--from-run", run)       # a block trains on those embeddings too


@pytest.mark.parametrize("command", ["cotrain", "train-digital"])
def test_no_encoder_to_train_or_cotrain_is_a_one_line_error(front_end, command):
    tmp, cfg = front_end
    proc = mixsig(tmp, command, cfg, check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "digital.encoder='none'" in lines[0] and "mixsig train-analog" in lines[0], proc.stderr
