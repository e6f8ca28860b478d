"""The robustness map's axes for the chip's edges (converters and wires): their specs, their
grid checks, a sweep recomputed by hand, and an ngspice spot check with wires."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.hardware import robustness as rb


@pytest.fixture(scope="module")
def block():
    from analog.builders import build_dense_network
    model = build_dense_network(4, 3, hidden=(6,), seed=3)
    model.compile("mse", "adam")
    x = np.random.default_rng(0).uniform(-1, 1, (40, 4))
    y = model.predict(x).argmax(1)
    yield model, x, y
    model.close()


def test_edge_axes_set_their_one_field():
    spec, t = rb.spec_for("dac_bits", 4)
    assert (spec.dac.bits, spec.dac.range, spec.adc.bits, spec.wires.r_segment, t) == (4, 1.0, None, 0.0, 0.0)
    spec, _ = rb.spec_for("adc_bits", 3)
    assert (spec.adc.bits, spec.adc.calibrate, spec.dac.bits) == (3, True, None)
    spec, _ = rb.spec_for("adc_range", 0.2)
    assert (spec.adc.bits, spec.adc.range, spec.adc.calibrate) == (8, 0.2, False)
    spec, _ = rb.spec_for("r_segment", 10.0)
    assert spec.wires.r_segment == 10.0 and spec.adc.bits is None and spec.device.prog_noise == "none"
    assert rb.extend("adc_bits", [4, 3, 2]) == 1 and rb.extend("dac_bits", [2, 1]) is None
    assert rb.extend("adc_range", [0.1, 0.05]) == 0.025 and rb.extend("r_segment", [10.0, 30.0]) == 90.0


@pytest.mark.parametrize("item, words", [
    ("dac_bits=4,0", ["dac_bits", "from 1 to 24"]),
    ("adc_bits=25", ["adc_bits", "from 1 to 24"]),
    ("adc_bits=2.5", ["adc_bits", "integers"]),
    ("adc_range=0.1,0", ["adc_range", "> 0"]),
    ("r_segment=-1", ["r_segment", ">= 0"]),
])
def test_bad_edge_grids_name_the_axis(item, words):
    with pytest.raises(ValueError) as err:
        rb.parse_grid([item])
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value), str(err.value)


def test_edge_sweep_matches_chips_programmed_by_hand(block):
    from analog.hardware import program, resolve_hardware
    model, x, y = block
    ideal, res = rb.sweep(model, x, y, {"adc_bits": (6, 1), "r_segment": (1.0, 1e7)}, seeds=1)
    assert ideal == 1.0
    by = {r.axis: r for r in res}
    chip = program(model, resolve_hardware("ideal", {"adc": {"bits": 1, "calibrate": True}}), 0)
    peak = np.abs(model.predict(x)).max()
    assert chip.calibrate_adc(x) == pytest.approx(peak, rel=1e-12)
    # one bit per differential output: every output reads ±peak, so ties go to the first class
    codes = np.where(model.predict(x) + peak >= peak, peak, -peak)
    assert by["adc_bits"].mean[1] == pytest.approx(np.mean(codes.argmax(1) == y))
    six_bits = _calibrated(program(model, resolve_hardware("ideal", {"adc": {"bits": 6, "calibrate": True}}), 0), x)
    assert by["adc_bits"].mean[0] == six_bits.accuracy(x, y, 0.0)
    assert by["r_segment"].mean[0] == 1.0 > by["r_segment"].mean[1]
    assert rb.spot_value(by["r_segment"]) == 1e7


def _calibrated(chip, x):
    chip.calibrate_adc(x)
    return chip


def test_wire_spot_check_agrees_with_ngspice(block):
    model, x, y = block
    r = rb.AxisResult("r_segment", [1.0, 30.0], mean=[1.0, 1.0])
    assert rb.spot_value(r) == 30.0                   # the wire axis is spot-checked even unbroken
    assert rb.spot_value(rb.AxisResult("levels", [8, 4], mean=[1.0, 1.0])) is None
    spot = rb.spot_check(model, "r_segment", 3000.0, x[:6], y[:6], processes=1)
    assert spot["both_converged"] == 6 and spot["max_abs_dy"] <= 1e-6
