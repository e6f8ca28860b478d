"""Model files (model.json + arrays.npz, no pickle) and the public analog API."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import analog
import analog.layers as L
from analog.devices import IdealDiode, MOSDiode, ShockleyDiode
from analog.model import AnalogModel
from analog.optimizers import Adam, Momentum, Schedule
from tests.analog_circuits import block, inputs


def _data(n=48, seed=0):
    x = inputs(n, 3, scale=1.0, seed=seed)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)


def _skip_model():
    """Two hidden layers, a skip connection from the inputs to the output crossbar, three
    device types, and a diode layer with per-element saturation currents."""
    x = L.InputVoltage(3, name="in")
    b = L.BiasVoltage([0.8, -0.6], name="b")
    h = L.Dense(4, g_min=1e-7, g_max=2e-5, seed=1, name="d1")(L.Concatenate(name="c1")([x, b]))
    h = L.DiodeLayer("up", -0.3, ShockleyDiode(IS=np.array([1e-12, 2e-12, 3e-12, 4e-12]), RS=20.0), name="u1")(h)
    h = L.DiodeLayer("down", 0.3, MOSDiode(VTO=0.3, KP=2e-4), name="w1")(h)
    h = L.Amplification(3.0, name="a1")(h)
    h2 = L.Dense(3, g_min=1e-7, g_max=2e-5, init="glorot", lr_scale=0.5, seed=2, name="d2")(
        L.Concatenate(name="c2")([h, b]))
    h2 = L.DiodeLayer("up", 0.1, IdealDiode(threshold=0.2, r_on=2e3, smoothing=0.02), name="u2")(h2)
    out = L.Dense(4, g_min=1e-7, g_max=2e-5, seed=3, name="d3")(L.Concatenate(name="c3")([h2, x, b]))
    return AnalogModel(x, L.CurrentLayer(name="y")(out), vref=0.6, gmin=1e-11, name="skip")


def test_folder_holds_json_and_npz_without_pickle(tmp_path):
    m = block(hidden=(4,))
    m.compile(loss="mse", optimizer="adam", beta=1e-7)
    m.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["arrays.npz", "model.json"]
    desc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert desc["format"] == "mixsig-analog-model" and desc["version"] == 1
    # every array is a plain .npy inside the npz, readable without pickle
    with np.load(tmp_path / "m" / "arrays.npz", allow_pickle=False) as z:
        for key in z.files:
            assert z[key].dtype != object
    with zipfile.ZipFile(tmp_path / "m" / "arrays.npz") as zf:
        assert all(n.endswith(".npy") for n in zf.namelist())


def test_round_trip_rebuilds_the_same_circuit(tmp_path):
    m = _skip_model()
    m.compile(loss="cross_entropy", optimizer=Momentum(0.02, 0.8, Schedule("step", 2, 0.5)), beta=2e-7,
              nudging="positive", engine_options={"tol_v": 1e-11}, temperature=0.3)
    x, y = _data(24)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    m.config = {"name": "skip", "analog": {"hidden": [4, 3]}}
    m.save(tmp_path / "m")
    b = AnalogModel.load(tmp_path / "m")
    assert b.summary() == m.summary()
    assert [l.name for l in b.dense_layers] == ["d1", "d2", "d3"]
    assert b.dense_layers[1].lr_scale == 0.5 and b.dense_layers[1].init == "glorot"
    dev = b.circuit.nonlinear[0].device
    assert isinstance(dev, ShockleyDiode) and np.array_equal(dev.IS, [1e-12, 2e-12, 3e-12, 4e-12]) and dev.RS == 20.0
    assert isinstance(b.circuit.nonlinear[1].device, MOSDiode) and isinstance(b.circuit.nonlinear[2].device, IdealDiode)
    assert (b.circuit.vref, b.circuit.gmin, b.name, b.epoch, b.config) == (0.6, 1e-11, "skip", 1, m.config)
    assert (b.beta, b.nudging, b.engine_options, b.loss.temperature) == (2e-7, "positive", {"tol_v": 1e-11}, 0.3)
    assert b.optimizer.get_config() == m.optimizer.get_config() and b.optimizer.iterations == 3
    for ga, gb in zip(m.conductances, b.conductances):
        assert np.array_equal(ga, gb)
    # the same node numbering: identical operating points, bit for bit
    xs = inputs(5, 3, seed=9)
    assert np.array_equal(m.solve(xs).v, b.solve(xs).v)
    assert b.history.history == m.history.history
    for name, (counts, edges) in m.history.histograms[0].items():
        assert np.array_equal(b.history.histograms[0][name][0], counts)
        assert np.array_equal(b.history.histograms[0][name][1], edges)


def test_uncompiled_model_round_trip(tmp_path):
    m = block(hidden=(3,))
    m.save(tmp_path / "m")
    b = AnalogModel.load(tmp_path / "m")
    assert not b.compiled and b.epoch == 0
    assert np.array_equal(m.predict(inputs(3, 3)), b.predict(inputs(3, 3)))


@pytest.mark.parametrize("make_opt", [lambda: Adam(0.02, schedule=Schedule("cosine", total_epochs=4)),
                                      lambda: Momentum(0.05, 0.9)], ids=["adam-cosine", "momentum"])
def test_resume_is_exact(tmp_path, make_opt):
    """Save after 2 of 4 epochs, load, train 2 more: the same conductances, bit for bit, as an
    uninterrupted 4-epoch run (optimiser slots, step count, schedule, epoch, shuffles)."""
    x, y = _data()
    full = block(hidden=(5,), g=(1e-7, 2e-5))
    full.compile(loss="mse", optimizer=make_opt(), beta=1e-7, amplitude=0.3)
    full.fit(x, y, epochs=4, batch_size=16, verbose=0, seed=3)
    half = block(hidden=(5,), g=(1e-7, 2e-5))
    half.compile(loss="mse", optimizer=make_opt(), beta=1e-7, amplitude=0.3)
    half.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=3)
    half.save(tmp_path / "m")
    del half
    resumed = AnalogModel.load(tmp_path / "m")
    resumed.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=3)
    assert resumed.epoch == 4
    for ga, gb in zip(full.conductances, resumed.conductances):
        np.testing.assert_array_equal(ga, gb)
    assert resumed.history.history["loss"] == full.history.history["loss"]


def _saved(tmp_path):
    m = block(hidden=(3,))
    m.compile()
    m.save(tmp_path / "m")
    return tmp_path / "m", json.loads((tmp_path / "m" / "model.json").read_text())


@pytest.mark.parametrize("where, text", [("layer", "unknown layer type 'os.system'"),
                                         ("device", "unknown device type 'subprocess.Popen'"),
                                         ("optimizer", "unknown optimizer type 'builtins.eval'")])
def test_unknown_type_names_are_refused_not_imported(tmp_path, where, text):
    folder, desc = _saved(tmp_path)
    if where == "layer":
        desc["layers"][0]["type"] = "os.system"
    elif where == "device":
        next(l for l in desc["layers"] if l["type"] == "DiodeLayer")["config"]["device"]["type"] = "subprocess.Popen"
    else:
        desc["training"]["optimizer"]["config"]["name"] = "builtins.eval"
    (folder / "model.json").write_text(json.dumps(desc))
    with pytest.raises(ValueError, match="known:") as err:
        AnalogModel.load(folder)
    assert text in str(err.value)


def test_old_pickle_folder_is_refused_with_how_to_reexport(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.pkl").write_bytes(b"\x80\x04not to be unpickled")
    with pytest.raises(ValueError, match="model.pkl") as err:
        AnalogModel.load(old)
    assert "previous release" in str(err.value) and ".save(" in str(err.value)
    # an old summary model.json (no format key) beside it: refused too, pointing to --migrate
    (old / "model.json").write_text(json.dumps({"name": "x", "epoch": 3, "config": {}, "layers": []}))
    with pytest.raises(ValueError, match="--migrate"):
        AnalogModel.load(old)


def test_missing_and_damaged_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing model.json"):
        AnalogModel.load(tmp_path / "nothing")
    folder, desc = _saved(tmp_path)
    desc["version"] = 99
    (folder / "model.json").write_text(json.dumps(desc))
    with pytest.raises(ValueError, match="version 99"):
        AnalogModel.load(folder)
    folder, desc = _saved(tmp_path)
    with np.load(folder / "arrays.npz") as z:
        kept = {k: z[k] for k in z.files if k != "conductances/0"}
    np.savez(folder / "arrays.npz", **kept)
    with pytest.raises(ValueError, match="incomplete.*conductances/0"):
        AnalogModel.load(folder)


def test_migrate_old_folder(tmp_path):
    """An old folder (model.json summary with the experiment config + conductances.npz) is
    rebuilt from its config by `python -m pipeline.system.analog_block --migrate`."""
    from pipeline.system.analog_block import model_from_config
    from pipeline.config import config_dict, load_config
    cfg = load_config("experiments/iris.yaml")
    m = model_from_config(cfg, 4, 3)
    old = tmp_path / "old"
    old.mkdir()
    np.savez(old / "conductances.npz", **{l.name: l.G for l in m.dense_layers})
    (old / "model.json").write_text(json.dumps({"name": m.name, "epoch": 5, "config": config_dict(cfg), "layers": []}))
    (old / "model.pkl").write_bytes(b"old")
    out = subprocess.run([sys.executable, "-m", "pipeline.system.analog_block", "--migrate", str(old), str(tmp_path / "new")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    b = AnalogModel.load(tmp_path / "new")
    assert b.epoch == 5 and b.compiled
    for ga, gb in zip(m.conductances, b.conductances):
        assert np.array_equal(ga, gb)


# ---- public API ------------------------------------------------------------------------------
def test_public_api_is_complete_and_light():
    for name in ("InputVoltage", "BiasVoltage", "Dense", "DiodeLayer", "Amplification", "CurrentLayer",
                 "Concatenate", "AnalogModel", "build_dense_network", "make_device", "devices", "NativeEngine",
                 "total_energy", "Solution", "ConvergenceError", "ep_gradients", "exact_gradients",
                 "GradientResult", "losses", "optimizers", "Schedule", "gradient_report", "NgspiceEngine"):
        assert name in analog.__all__ and getattr(analog, name) is not None
    # `import analog` loads neither the ngspice engine nor the hardware models (nor Keras, MLflow)
    code = ("import sys, analog; "
            "print(sorted(m for m in sys.modules if m.startswith(('PySpice', 'analog.ngspice', 'analog.hardware', "
            "'tensorflow', 'keras', 'mlflow'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    # every public name resolves (the lazy ones on first use)
    out = subprocess.run([sys.executable, "-c", "from analog import *; print(NgspiceEngine.__name__)"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "NgspiceEngine", out.stderr
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        analog.nothing


def test_one_set_of_block_defaults():
    """build_dense_network, make_device and the config schema take their defaults from
    analog.builders.BLOCK_DEFAULTS (they disagreed: ±0.5 V and IS 1e-14 vs −0.3/+0.3 and 1e-12)."""
    from analog.builders import BLOCK_DEFAULTS
    from pipeline.config import config_dict, validate_config
    m = analog.build_dense_network(3, 2, hidden=(4,))
    up, down = m.circuit.nonlinear
    assert (up.layer.bias, down.layer.bias) == (-0.3, 0.3)
    assert up.device == ShockleyDiode(IS=1e-12, N=1.0, RS=0.0)
    assert analog.make_device("mos") == MOSDiode(VTO=0.3, KP=1e-4, LAMBDA=0.0, W=1e-6, L=1e-6)
    assert m.dense_layers[0].g_min == 1e-7 and m.dense_layers[0].g_max == 2e-5 and m.circuit.gmin == 1e-12
    cfg = config_dict(validate_config({"name": "x", "data": {"dataset": "iris"}}))["analog"]
    for key, value in BLOCK_DEFAULTS.items():
        assert cfg[key] == value, key
    with pytest.raises(ValueError, match="analog.diode.iss: unknown key"):
        analog.make_device("shockley", iss=1e-12)


def test_malformed_description_is_a_value_error(tmp_path):
    folder, desc = _saved(tmp_path)
    next(l for l in desc["layers"] if l["type"] == "Dense")["config"]["colour"] = "red"
    (folder / "model.json").write_text(json.dumps(desc))
    with pytest.raises(ValueError, match="malformed.*colour"):
        AnalogModel.load(folder)


def test_extension_types_round_trip_when_registered(tmp_path):
    """A user's loss saves by name once registered; unregistered, the model still saves (with
    a warning and a note) and loads uncompiled instead of failing."""
    from analog.losses import LOSSES, MSE, register_loss

    class Scaled(MSE):
        name = "scaled_mse_test"

    m = block(hidden=(3,))
    m.compile(loss=Scaled(amplitude=0.2))
    with pytest.warns(UserWarning, match="loss Scaled was not saved"):
        m.save(tmp_path / "a")
    a = AnalogModel.load(tmp_path / "a")
    assert not a.compiled and "register_loss" in a.not_saved[0]
    register_loss(Scaled)
    try:
        m.save(tmp_path / "b")
        b = AnalogModel.load(tmp_path / "b")
        assert type(b.loss) is Scaled and b.loss.amplitude == 0.2
    finally:
        LOSSES.pop(Scaled.name)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.95])
def test_a_truncated_arrays_file_is_named(tmp_path, keep):
    from analog.errors import AnalogInputError
    m = block(hidden=(4,))
    m.compile(loss="mse", optimizer="adam", beta=1e-7)
    m.save(tmp_path / "m")
    npz = tmp_path / "m" / "arrays.npz"
    data = npz.read_bytes()
    npz.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(AnalogInputError, match="arrays.npz"):
        AnalogModel.load(tmp_path / "m")


@pytest.mark.parametrize("units", [2e9, 2_000_000_000, 10**15, -3, 0])
def test_an_oversized_or_empty_layer_is_refused_before_allocation(tmp_path, units):
    """model.json asking for a Dense layer of 2e9 units: refused from the description (the
    n×n matrices would need exabytes) instead of a huge allocation."""
    from analog.errors import AnalogInputError
    m = block(hidden=(4,))
    m.save(tmp_path / "m")
    file = tmp_path / "m" / "model.json"
    desc = json.loads(file.read_text())
    dense = next(layer for layer in desc["layers"] if layer["type"] == "Dense")
    dense["config"]["units"] = units
    file.write_text(json.dumps(desc))
    with pytest.raises(AnalogInputError, match=r"model.json.*(GiB|units=)"):
        AnalogModel.load(tmp_path / "m")
