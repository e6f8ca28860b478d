"""pipeline.config: schema validation, error messages, defaults, flatten, shipped configs."""
from pathlib import Path

import pytest

from pipeline.config import SCHEMA, ConfigError, Field, flatten, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    return str(err.value)


def test_defaults_are_filled():
    cfg = validate_config({"name": "t"})
    assert cfg["seed"] == 0 and cfg["data"]["dataset"] == "fashion_mnist"
    assert cfg["analog"]["g_min"] < cfg["analog"]["g_max"]
    assert cfg["analog"]["diode"]["model"] == "shockley"
    assert cfg["training"]["optimizer"]["name"] == "adam"
    assert cfg["mlflow"]["experiment"] is None
    assert set(cfg) == set(SCHEMA)


def test_defaults_are_not_shared_between_configs():
    a = validate_config({"name": "a"})
    a["analog"]["hidden"].append(999)
    a["analog"]["bias_levels"].clear()
    b = validate_config({"name": "b"})
    assert 999 not in b["analog"]["hidden"] and b["analog"]["bias_levels"]


def test_unknown_key_lists_allowed_keys_and_suggests():
    msg = _error({"name": "t", "analog": {"bias_level": [1.0]}})
    assert "analog.bias_level" in msg and "did you mean 'analog.bias_levels'" in msg
    assert "g_min" in msg and "gain" in msg  # the allowed keys at that level
    msg = _error({"name": "t", "trainign": {}})
    assert "trainign" in msg and "'training'" in msg


def test_unknown_nested_key():
    msg = _error({"name": "t", "analog": {"diode": {"modle": "ideal"}}})
    assert "analog.diode.modle" in msg and "analog.diode.model" in msg


def test_wrong_type_names_key_and_value():
    msg = _error({"name": "t", "training": {"epochs": "ten"}})
    assert "training.epochs" in msg and "'ten'" in msg and "int" in msg
    msg = _error({"name": "t", "training": {"epochs": 2.5}})
    assert "training.epochs" in msg and "2.5" in msg
    msg = _error({"name": "t", "seed": True})
    assert "seed" in msg and "True" in msg
    msg = _error({"name": "t", "analog": {"hidden": [10, "x"]}})
    assert "analog.hidden[1]" in msg and "'x'" in msg
    msg = _error({"name": "t", "analog": "big"})
    assert "analog" in msg and "mapping" in msg


def test_out_of_range_names_key_value_and_bounds():
    msg = _error({"name": "t", "data": {"validation_fraction": 0.7}})
    assert "data.validation_fraction" in msg and "0.7" in msg and "< 0.5" in msg
    msg = _error({"name": "t", "analog": {"gain": 0.5}})
    assert "analog.gain" in msg and "0.5" in msg and ">= 1" in msg
    msg = _error({"name": "t", "training": {"beta": 0}})
    assert "training.beta" in msg and "> 0" in msg
    msg = _error({"name": "t", "analog": {"hidden": [10, 0]}})
    assert "analog.hidden[1]" in msg and "0" in msg


def test_bad_choice_lists_choices():
    msg = _error({"name": "t", "training": {"loss": "hinge"}})
    assert "training.loss" in msg and "'hinge'" in msg and "mse" in msg and "cross_entropy" in msg
    msg = _error({"name": "t", "data": {"dataset": "mnist"}})
    assert "data.dataset" in msg and "fashion_mnist" in msg


def test_cross_field_checks_name_both_keys():
    msg = _error({"name": "t", "analog": {"g_min": 2e-5, "g_max": 1e-5}})
    assert "analog.g_min" in msg and "analog.g_max" in msg and "2e-05" in msg and "1e-05" in msg
    msg = _error({"name": "t", "analog": {"g_min": 1e-5, "g_max": 1e-5}})
    assert "g_min < g_max" in msg
    msg = _error({"name": "t", "digital": {"v_low": 1.0, "v_high": -1.0}})
    assert "digital.v_low" in msg and "digital.v_high" in msg


def test_required_name_and_null_handling():
    assert "name" in _error({"seed": 1})
    assert validate_config({"name": "t", "data": {"limit_train": None}})["data"]["limit_train"] is None
    assert "training.epochs" in _error({"name": "t", "training": {"epochs": None}})


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml"):
        load_config(tmp_path / "nothere.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: w\ntraining:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(wrong)
    assert "wrong.yaml" in str(err.value) and "training.lr" in str(err.value)


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nanalog:\n  g_min: 1e-7\n  g_max: 2e-5\n")  # YAML 1.1 reads these as strings
    cfg = load_config(path)
    assert cfg["analog"]["g_min"] == pytest.approx(1e-7) and isinstance(cfg["analog"]["g_max"], float)


def test_flatten_gives_mlflow_params():
    cfg = validate_config({"name": "t", "analog": {"hidden": [32, 16]}})
    flat = flatten(cfg)
    assert flat["name"] == "t"
    assert flat["analog.hidden"] == "32,16"
    assert flat["analog.diode.model"] == "shockley"
    assert flat["training.optimizer.lr"] == cfg["training"]["optimizer"]["lr"]
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in flat.values())
    assert not any(isinstance(v, dict) for v in flat.values())


def _fields(schema, prefix=""):
    for key, spec in schema.items():
        if isinstance(spec, dict):
            yield from _fields(spec, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", spec


def test_every_schema_key_is_documented_and_its_default_valid():
    for key, spec in _fields(SCHEMA):
        assert isinstance(spec, Field) and spec.doc, key
    validate_config({"name": "defaults"})  # the defaults pass their own checks


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiment_configs_load(path):
    cfg = load_config(path)
    assert cfg["name"]
    if path.stem in ("xor", "iris", "wine"):
        assert cfg["data"]["dataset"] == path.stem


def test_mos_diode_parameters_reach_the_device_and_its_spice_card():
    import numpy as np

    from analog.devices import MOSDiode
    from pipeline.analog_config import model_from_config

    cfg = validate_config({"name": "t", "analog": {"hidden": [3], "diode": {
        "model": "mos", "threshold": 0.25, "kp": 3e-4, "lambda": 0.05, "w": 2e-6, "l": 5e-7}}})
    model = model_from_config(cfg, n_features=2, n_classes=2, compile=False)
    devices = {type(b.device) for b in model.circuit.nonlinear}
    assert devices == {MOSDiode}
    dev = model.circuit.nonlinear[0].device
    assert (dev.VTO, dev.KP, dev.LAMBDA, dev.W, dev.L) == (0.25, 3e-4, 0.05, 2e-6, 5e-7)
    text = model.to_netlist(np.zeros((1, 2))).lower()   # ngspice checks the card first
    assert "nmos(level=1 vto=0.25 kp=0.0003 lambda=0.05" in text and "w=2e-06 l=5e-07" in text
    assert "analog.diode.kp" in _error({"name": "t", "analog": {"diode": {"kp": 0}}})
