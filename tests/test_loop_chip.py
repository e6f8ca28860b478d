"""The frozen chip in the loop (hardware.loop_chip): the recovery on that chip from logged
accuracies worked by hand, the config's refusals, and the cross-entropy input gradient on a
chip (digital.through_loss) against the exact implicit gradient of the chip's circuit."""
from __future__ import annotations

import numpy as np
import pytest

from analog.hardware import program, resolve_hardware
from analog.losses import CrossEntropy
from analog.builders import build_dense_network
from analog.optimizers import Adam
from pipeline.hardware.chip_metrics import recovered_fraction_loop
from pipeline.config.loading import validate_config
from pipeline.config.errors import ConfigError


def test_recovered_fraction_loop_by_hand():
    m = {"loop_chip_programmed_accuracy": 0.70, "e2e_acc_ideal": 0.90}
    # round 0 logged twice (programmed, then fine-tuned in situ); rounds given out of step order
    rounds = [(0, 0.70), (0, 0.75), (2, 0.88), (1, 0.80)]
    value, why = recovered_fraction_loop(m, rounds)
    assert value == pytest.approx((0.88 - 0.70) / (0.90 - 0.70)) and why == "defined"
    assert recovered_fraction_loop(m, [(0, 0.70)])[0] is None                           # no round
    assert recovered_fraction_loop({**m, "loop_chip_programmed_accuracy": 0.95}, rounds)[0] is None
    value, why = recovered_fraction_loop({"e2e_acc_ideal": 0.9}, rounds)
    assert value is None and "loop_chip_programmed_accuracy" in why


def _cfg(hardware: dict) -> dict:
    return {"name": "t", "data": {"dataset": "xor"}, "hardware": {"preset": "pcm", **hardware}}


@pytest.mark.parametrize("hardware, words", [
    ({"chips": 2, "frozen": True, "loop_chip": 2}, ["hardware.loop_chip=2", "hardware.chips=2"]),
    ({"chips": 3, "loop_chip": 1}, ["hardware.loop_chip=1", "hardware.frozen"]),
])
def test_loop_chip_refusals(hardware, words):
    with pytest.raises(ConfigError) as err:
        validate_config(_cfg(hardware))
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)
    assert validate_config(_cfg({"chips": 3, "frozen": True, "loop_chip": 2})).hardware.loop_chip == 2


def test_cross_entropy_input_gradient_on_a_chip_matches_the_exact_one():
    rng = np.random.default_rng(0)
    m = build_dense_network(4, 3, hidden=(6,), up_bias=-0.3, down_bias=0.3, seed=2)
    m.compile("mse", Adam(0.02), beta=1e-7)
    y = rng.integers(0, 3, 90)
    m.fit(np.clip(rng.uniform(-0.5, 0.5, (3, 4))[y] + rng.normal(0, 0.2, (90, 4)), -1, 1), y, epochs=2,
          batch_size=16, verbose=0)
    chip = program(m, resolve_hardware("rram", {"device": {"stuck_g_min": 0.05, "stuck_g_max": 0.05},
                                                "variation": {"gain_sigma": 0.05, "is_sigma": 0.3}}), seed=4)
    block = chip                                    # a Chip is an analog Block on its model's cost
    x, labels = rng.uniform(-1, 1, (16, 4)), rng.integers(0, 3, 16)
    ce = CrossEntropy(temperature=0.1)
    # one read of the conductances for both: the chip's reads carry noise, so fix it
    G = chip.conductances_at(0.0)
    chip.conductances_at = lambda t, rng=None: G
    ep = block.gradients(x, labels, input_grad=True, loss=ce)
    exact = block.gradients(x, labels, method="exact", loss=ce)
    mse = block.gradients(x, labels, method="exact")
    g, e = ep.input_grad.ravel(), exact.input_grad.ravel()
    assert g @ e / (np.linalg.norm(g) * np.linalg.norm(e)) >= 0.999
    assert np.allclose(ep.loss, exact.loss)
    assert not np.allclose(exact.loss, mse.loss)
    chip.close()
