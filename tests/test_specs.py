"""analog.specs: the typed block and training descriptions (checked fields, frozen), the one
conversion from the experiment config (pipeline.system.analog_block.analog_specs), a model
saved before the specs existed, and the frozen config."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from analog import AnalogModel, MOSDiode, ShockleyDiode, build_dense_network, build_network
from analog.errors import SpecError
from analog.specs import BlockSpec, DenseLayerSpec, DiodeSpec, LocalLayerSpec, OptimizerSpec, TrainingSpec
from analog.training_setup import compile_model
from pipeline.config import load_config, validate_config
from pipeline.system.analog_block import analog_specs, compile_from_config, model_from_config

ROOT = Path(__file__).resolve().parents[1]
BEFORE = ROOT / "tests" / "data" / "model_before_specs"       # saved by c0ff870 (before the specs)


@pytest.mark.parametrize("make,field", [
    (lambda: DenseLayerSpec(0), "DenseLayerSpec.units=0"),
    (lambda: DenseLayerSpec(3, gain=-1.0), "DenseLayerSpec.gain=-1.0"),
    (lambda: DenseLayerSpec(3, diodes=1), "DenseLayerSpec.diodes=1"),
    (lambda: LocalLayerSpec(2, kernel=(2, 0)), "LocalLayerSpec.kernel=(2, 0)"),
    (lambda: LocalLayerSpec(2, kernel=2, padding="full"), "LocalLayerSpec.padding='full'"),
    (lambda: DiodeSpec(up_bias=float("nan")), "DiodeSpec.up_bias=nan"),
    (lambda: BlockSpec(g_min=3e-5), "BlockSpec.g_min=3e-05"),
    (lambda: BlockSpec(layers=({"type": "dense", "units": 3},)), "BlockSpec.layers[0]="),
    (lambda: BlockSpec(bias_levels=()), "BlockSpec.bias_levels=()"),
    (lambda: BlockSpec(init="zeros"), "BlockSpec.init='zeros'"),
    (lambda: OptimizerSpec("rmsprop"), "OptimizerSpec.name='rmsprop'"),
    (lambda: OptimizerSpec(momentum=1.0), "OptimizerSpec.momentum=1.0"),
    (lambda: TrainingSpec(beta=0), "TrainingSpec.beta=0"),
    (lambda: TrainingSpec(batch_size=2.0), "TrainingSpec.batch_size=2.0"),
    (lambda: TrainingSpec(gradient="exact", engine="ngspice"), "TrainingSpec.gradient='exact'"),
    (lambda: TrainingSpec(algorithm="c-ep"), "TrainingSpec.algorithm='c-ep'"),
])
def test_a_bad_field_is_a_spec_error_naming_it(make, field):
    with pytest.raises(SpecError) as err:
        make()
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)          # programs catching ValueError keep working


def test_specs_are_frozen_and_normalised():
    spec = BlockSpec(layers=[LocalLayerSpec(2, kernel=3, input_shape=[4, 4, 1])], bias_levels=[1, -1])
    assert spec.layers[0].kernel == (3, 3) and spec.layers[0].input_shape == (4, 4, 1)
    assert spec.bias_levels == (1.0, -1.0) and isinstance(spec.layers, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.gain = 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainingSpec().optimizer.lr = 1.0


def test_a_layer_that_does_not_fit_the_inputs_names_its_index():
    spec = BlockSpec(layers=(LocalLayerSpec(2, kernel=2, input_shape=(3, 3, 1)),))
    with pytest.raises(SpecError, match=r"^layers\[0\]\.input_shape=\[3, 3, 1\]: must hold the block's 8 inputs"):
        build_network(8, 2, spec)


def test_the_config_becomes_the_specs_field_by_field():
    cfg = validate_config({"name": "c", "seed": 4, "analog": {
        "layers": [{"type": "dense", "units": 5, "amplifier": False}, {"type": "dense", "units": 3, "gain": 2.0}],
        "vref": 0.2, "input_amplitude": 0.8, "g_min": 1e-6, "g_max": 4e-5, "init": "glorot", "gain": 3.0,
        "bias_levels": [0.5], "gmin": 1e-11,
        "diode": {"model": "mos", "threshold": 0.25, "kp": 3e-4, "up_bias": -0.2, "down_bias": 0.4}},
        "digital": {"v_low": -0.8, "v_high": 0.8},
        "training": {"loss": "cross_entropy", "temperature": 0.2, "beta": 2e-6, "nudging": "positive",
                     "epochs": 3, "batch_size": 16, "optimizer": {"name": "momentum", "lr": 0.05, "momentum": 0.5,
                                                                  "schedule": "step", "step_size": 2}}})
    block, training, hardware = analog_specs(cfg, epochs=7)
    assert block.layers == (DenseLayerSpec(5, amplifier=False), DenseLayerSpec(3, gain=2.0))
    assert (block.vref, block.input_amplitude, block.g_min, block.g_max, block.init, block.gain) == \
        (0.2, 0.8, 1e-6, 4e-5, "glorot", 3.0)
    assert (block.bias_levels, block.gmin, block.seed, block.name) == ((0.5,), 1e-11, 4, "c")
    assert block.diode == DiodeSpec(MOSDiode(VTO=0.25, KP=3e-4, LAMBDA=0.0, W=1e-6, L=1e-6), -0.2, 0.4)
    assert training == TrainingSpec(loss="cross_entropy", temperature=0.2, beta=2e-6, nudging="positive",
                                    epochs=7, batch_size=16, optimizer=OptimizerSpec("momentum", 0.05, 0.5, "step", 2))
    assert hardware is None
    hw = analog_specs(validate_config({"name": "h", "seed": 2, "hardware": {"preset": "pcm", "training": "in-situ",
                                                                          "pulse_rule": "stochastic"}})).hardware
    assert (hw.hardware.name, hw.mode, hw.pulse_rule, hw.seed) == ("pcm", "in-situ", "stochastic", 2)


def test_the_smoke_block_is_the_keyword_block():
    """The config's block and the one written as keywords (the builder before the specs took
    them) are the same circuit with the same initial conductances, and train the same step."""
    cfg = load_config(ROOT / "experiments" / "smoke.yaml")
    a = model_from_config(cfg, 24, 10)
    b = build_dense_network(24, 10, hidden=(16,), g_min=1e-7, g_max=2e-5, init="uniform", gain=4.0,
                            bias_levels=(1.0, -1.0), device=ShockleyDiode(IS=1e-12, N=1.0, RS=0.0), up_bias=-0.3,
                            down_bias=0.3, vref=0.0, gmin=1e-12, seed=0, name="smoke")
    b.compile(loss="mse", optimizer="adam", beta=1e-6, midpoint=0.0, amplitude=0.5)
    for ga, gb in zip(a.conductances, b.conductances):
        np.testing.assert_array_equal(ga, gb)
    assert a.circuit.amp_gain.tolist() == b.circuit.amp_gain.tolist()
    x = np.random.default_rng(1).uniform(-1, 1, (16, 24))
    y = np.arange(16) % 10
    a.fit(x, y, epochs=1, batch_size=8, verbose=0)
    b.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for ga, gb in zip(a.conductances, b.conductances):
        np.testing.assert_array_equal(ga, gb)


def test_compile_model_keeps_the_optimiser_state_of_the_same_optimiser():
    m = build_network(3, 2, BlockSpec.dense((4,)))
    compile_model(m, TrainingSpec(epochs=2))
    x = np.random.default_rng(0).uniform(-1, 1, (8, 3))
    m.fit(x, np.arange(8) % 2, epochs=1, verbose=0)
    state, steps = m.optimizer.state, m.optimizer.iterations
    compile_model(m, TrainingSpec(epochs=3, optimizer=OptimizerSpec(lr=0.5)))
    assert m.optimizer.state is state and m.optimizer.iterations == steps == 1 and m.optimizer.lr == 0.5
    compile_model(m, TrainingSpec(optimizer=OptimizerSpec("sgd")))
    assert m.optimizer.iterations == 0


def test_a_model_saved_before_the_specs_loads_and_predicts_as_it_did():
    with np.load(BEFORE / "expected.npz") as z:
        x, expected = z["x"], z["predict"]
    m = AnalogModel.load(BEFORE / "saved")
    # the same circuit and conductances; the solver may take another Newton path to the same
    # operating point (both to machine precision), so the last bits may differ
    np.testing.assert_allclose(m.predict(x), expected, rtol=0, atol=1e-12)
    # its config builds today the same layer graph, devices and options
    cfg = validate_config(json.loads((BEFORE / "saved" / "model.json").read_text())["config"])
    fresh = model_from_config(cfg, 4, 3)
    assert fresh.summary() == m.summary()
    compile_from_config(m, cfg, 2)                     # and continues training under the config
    m.fit(x, np.zeros(len(x), dtype=int), epochs=1, batch_size=8, verbose=0)
    assert m.epoch == 2


def test_a_validated_config_is_frozen():
    cfg = load_config(ROOT / "experiments" / "smoke.yaml", ["analog.gain=2.0"])
    assert cfg.analog.gain == 2.0                                   # --set applies before validation
    for obj, key, value in ((cfg, "seed", 1), (cfg.analog, "gain", 3.0), (cfg.training.optimizer, "lr", 1.0)):
        with pytest.raises(ValidationError, match="frozen"):
            setattr(obj, key, value)
    hw = validate_config({"name": "h", "hardware": {"preset": "pcm", "device": {"g_max": 3e-5}, "chips": 3,
                                                    "frozen": True, "loop_chips": 2}}).hardware
    assert hw.overrides == {"device": {"g_max": 3e-5}} and hw.loop_chips == [0, 1]   # normalised while validated
    with pytest.raises(ValidationError, match="frozen"):
        hw.chips = 4
    changed = cfg.model_copy(update={"analog": cfg.analog.model_copy(update={"gain": 3.0})})
    assert (changed.analog.gain, cfg.analog.gain) == (3.0, 2.0)


def test_the_default_config_is_the_default_specs():
    """One set of defaults: the schema takes them from the specs, so the defaults convert to
    the defaults (field by field, with the config's name and seed)."""
    block, training, hardware = analog_specs(validate_config({"name": "d", "seed": 5}))
    assert block == BlockSpec(name="d", seed=5) and training == TrainingSpec() and hardware is None
