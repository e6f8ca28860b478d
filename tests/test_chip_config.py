"""experiments/fashion_mnist_chip.yaml: it validates, it carries the published chip's figures
its comments name (NeuRRAM's devices and converters, 2.5 ohm wires), and a block built from it
programs onto that chip (the wires refuse a gain spread only when a chip is programmed)."""
from pathlib import Path

import numpy as np

from analog.hardware import program, resolve_hardware
from pipeline.config import load_config
from pipeline.config.hardware_section import preset_overrides
from pipeline.system.analog_block import model_from_config

CHIP = Path(__file__).resolve().parent.parent / "experiments" / "fashion_mnist_chip.yaml"


def _spec(cfg):
    return resolve_hardware(cfg.hardware.preset, preset_overrides(cfg.hardware))


def test_chip_config_validates_with_the_published_figures():
    cfg = load_config(CHIP)
    spec = _spec(cfg)
    assert (spec.device.g_min, spec.device.g_max, spec.device.prog_sigma) == (1e-6, 40e-6, 2e-6)
    assert (spec.dac.bits, spec.dac.range) == (4, 1.0)
    assert (spec.adc.bits, spec.adc.calibrate) == (8, True)
    assert spec.wires.r_segment == 2.5 and spec.variation.gain_sigma == 0.0
    hw, digital = cfg.hardware, cfg.digital
    assert hw.frozen and hw.training == "ideal" and hw.finetune_epochs == 0   # what paid on it
    assert (digital.retrain_method, digital.through_loss) == ("through-analog", "cross_entropy")


def test_a_block_from_the_chip_config_programs_and_reads():
    cfg = load_config(CHIP, ["analog.hidden=[4]"])   # a small block of the config's kind
    model = model_from_config(cfg, n_features=6, n_classes=3, compile=False)
    chip = program(model, _spec(cfg), seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, (20, 6))
    full_scale = chip.calibrate_adc(x)
    y = chip.predict(x)
    step = 2 * full_scale / (2 ** 8 - 1)               # the 8-bit ADC's codes over ±full scale
    codes = (y + full_scale) / step
    assert y.shape == (20, 3) and full_scale > 0
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-6)
