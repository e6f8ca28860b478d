"""pipeline.config: schema validation, error messages, defaults, overrides, flatten, shipped configs,
the JSON Schema and the generated reference docs/config.md."""
import json
from pathlib import Path

import pytest

from pipeline.config import (ConfigError, RootConfig, config_dict, config_json_schema, flatten, load_config,
                             render_config_reference, validate_config)
from pipeline.config.schema import Section

ROOT = Path(__file__).resolve().parents[1]


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    return str(err.value)


def test_defaults_are_filled():
    cfg = validate_config({"name": "t"})
    assert cfg.seed == 0 and cfg.data.dataset == "fashion_mnist"
    assert cfg.analog.g_min < cfg.analog.g_max
    assert cfg.analog.diode.model == "shockley"
    assert cfg.training.optimizer.name == "adam"
    assert cfg.mlflow.experiment is None
    assert isinstance(cfg, RootConfig) and set(config_dict(cfg)) == set(RootConfig.model_fields)
    assert cfg.hardware is None   # no hardware section: the ideal block, as before


def test_defaults_are_not_shared_between_configs():
    a = validate_config({"name": "a"})
    a.analog.hidden.append(999)
    a.analog.bias_levels.clear()
    b = validate_config({"name": "b"})
    assert 999 not in b.analog.hidden and b.analog.bias_levels


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
    assert validate_config({"name": "t", "data": {"limit_train": None}}).data.limit_train is None
    assert "training.epochs" in _error({"name": "t", "training": {"epochs": None}})


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml"):
        load_config(tmp_path / "nothere.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match=f"config file {tmp_path} is a folder"):
        load_config(tmp_path)
    binary = tmp_path / "model.npz"
    binary.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe")
    with pytest.raises(ConfigError, match="model.npz is not a text file"):
        load_config(binary)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: w\ntraining:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(wrong)
    assert "wrong.yaml" in str(err.value) and "training.lr" in str(err.value)


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nanalog:\n  g_min: 1e-7\n  g_max: 2e-5\n")  # YAML 1.1 reads these as strings
    cfg = load_config(path)
    assert cfg.analog.g_min == pytest.approx(1e-7) and isinstance(cfg.analog.g_max, float)


def test_a_section_that_is_not_a_mapping_is_an_error_not_the_defaults():
    for raw, key in (({"analog": []}, "analog"), ({"training": 0}, "training"), ({"hardware": [1]}, "hardware")):
        msg = _error({"name": "t", **raw})
        assert msg.startswith(f"{key}: expected a mapping"), msg
    # `analog:` with every key commented out is YAML null: an error too, saying how to get the defaults
    msg = _error({"name": "t", "analog": None})
    assert msg.startswith("analog: null is not allowed") and "leave the section out" in msg
    assert validate_config({"name": "t", "analog": {}}).analog.hidden == [100]
    assert validate_config({"name": "t", "hardware": None}).hardware is None   # optional section


def test_hardware_keys_outside_the_preset_sections_are_named():
    msg = _error({"name": "t", "hardware": {"chip": 2}})
    assert msg.startswith("hardware.chip: unknown key (did you mean 'hardware.chips'?)") and "device" in msg


def test_embedding_range_must_fit_the_analog_input_range_for_every_command():
    msg = _error({"name": "t", "digital": {"v_low": -2}})
    assert "digital.v_low=-2.0" in msg and "analog.input_amplitude" in msg and "±1.0" in msg
    cfg = validate_config({"name": "t", "analog": {"input_amplitude": 2.0}, "digital": {"v_low": -2}})
    assert cfg.digital.v_low == -2.0


def test_several_problems_report_the_first_and_count_the_rest():
    msg = _error({"name": "t", "seed": -1, "training": {"epochs": 0, "batch_size": 0}})
    assert msg.startswith("seed: -1 is out of range") and "(and 2 more problems)" in msg


def _write(tmp_path, text="name: o\nanalog:\n  hidden: [8]\n"):
    path = tmp_path / "o.yaml"
    path.write_text(text)
    return path


def test_overrides_are_yaml_values_on_dotted_keys(tmp_path):
    path = _write(tmp_path)
    cfg = load_config(path, ["analog.hidden=[64, 32]", "analog.g_min=1e-7", "training.optimizer.name=sgd",
                             "analog.diode.is=2e-12", "hardware.preset=pcm", "data.limit_train=null"])
    assert cfg.analog.hidden == [64, 32] and cfg.analog.g_min == 1e-7
    assert cfg.training.optimizer.name == "sgd" and cfg.analog.diode.is_ == 2e-12
    assert cfg.hardware.preset == "pcm" and cfg.data.limit_train is None
    assert load_config(path).analog.hidden == [8]   # the file itself is untouched


@pytest.mark.parametrize("item, expected", [
    ("analog.hidden=[32,", ["--set analog.hidden", "not valid YAML"]),
    ("analog.hiden=[32]", ["analog.hiden: unknown key", "did you mean 'analog.hidden'"]),
    ("analog.hidden=[0]", ["analog.hidden[0]: 0 is out of range", ">= 1"]),
    ("training.epochs=ten", ["training.epochs: 'ten' has type str; expected int"]),
    ("seed.x=1", ["--set seed.x", "seed is a value (int), not a section"]),
    ("analog.gain", ["--set 'analog.gain'", "KEY=VALUE"]),
    ("=3", ["KEY=VALUE"]),
])
def test_bad_overrides_are_one_line_errors_naming_the_key(tmp_path, item, expected):
    path = _write(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(path, [item])
    msg = str(err.value)
    assert all(e in msg for e in expected), msg
    assert "\n" not in msg


def test_json_schema_exports_types_ranges_and_docs():
    schema = json.loads(json.dumps(config_json_schema()))   # plain JSON
    assert schema["$schema"].startswith("https://json-schema.org/") and schema["required"] == ["name"]
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    vf = defs["DataConfig"]["properties"]["validation_fraction"]
    assert (vf["exclusiveMinimum"], vf["exclusiveMaximum"], vf["default"]) == (0, 0.5, 0.1)
    assert defs["TrainingConfig"]["properties"]["loss"]["enum"] == ["mse", "cross_entropy"]
    assert "is" in defs["DiodeConfig"]["properties"] and defs["DiodeConfig"]["properties"]["is"]["description"]


def test_docs_config_md_is_up_to_date_with_the_schema():
    text = (ROOT / "docs" / "config.md").read_text()
    assert text == render_config_reference(), \
        "docs/config.md is stale: regenerate it with `.venv/bin/python -m pipeline.config`"
    for key in ("analog.diode.up_bias", "hardware.times", "training.optimizer.step_gamma"):
        assert f"| `{key}` |" in text
    assert "| `data.validation_fraction` | number | `0.1` | > 0 and < 0.5 |" in text


def test_bad_preset_field_is_named_where_it_was_written():
    msg = _error({"name": "t", "hardware": {"preset": "pcm", "overrides": {"device": {"nosuch": 1}}}})
    assert msg.startswith("hardware.overrides.device.nosuch: unknown key")
    msg = _error({"name": "t", "hardware": {"preset": "pcm", "device": {"nosuch": 1}}})
    assert msg.startswith("hardware.device.nosuch: unknown key")


def test_hardware_section_defaults_and_checks():
    hw = validate_config({"name": "t", "hardware": {}}).hardware
    assert hw.preset == "ideal" and hw.chips == 1 and hw.times == [0.0] and hw.training == "ideal"
    assert hw.frozen is False and hw.drift_compensation is None and hw.overrides == {}
    assert "hardware.chips: 0 is out of range" in _error({"name": "t", "hardware": {"chips": 0}})
    assert "hardware.times[1]: -1 is out of range" in _error({"name": "t", "hardware": {"times": [0, -1]}})
    msg = _error({"name": "t", "hardware": {"training": "insitu"}})
    assert "hardware.training" in msg and "in-situ" in msg and "aware" in msg
    assert "hardware.frozen" in _error({"name": "t", "hardware": {"frozen": "yes"}})


def test_hardware_preset_and_fields_are_checked_by_the_device_models():
    pytest.importorskip("analog.hardware")
    msg = _error({"name": "t", "hardware": {"preset": "pcmx"}})
    assert msg.startswith("hardware.preset") and "pcm" in msg and "rram" in msg and "ebana-4level" in msg
    msg = _error({"name": "t", "hardware": {"preset": "pcm", "device": {"g_min": 3e-5}}})
    assert msg.startswith("hardware.device.g_min") and "3e-05" in msg
    msg = _error({"name": "t", "hardware": {"preset": "pcm", "overrides": {"device": {"prog_sigma": -1}}}})
    assert msg.startswith("hardware.overrides.device.prog_sigma")
    # field-by-field keys and `overrides` end up in one mapping
    hw = validate_config({"name": "t", "hardware": {"preset": "rram", "device": {"g_max": 3e-5},
                                                    "overrides": {"variation": {"is_sigma": 0.2}}}}).hardware
    assert hw.overrides == {"variation": {"is_sigma": 0.2}, "device": {"g_max": 3e-5}} and "device" not in hw.model_dump()


def test_analog_defaults_are_the_blocks_defaults():
    from analog.builders import BLOCK_DEFAULTS
    analog = validate_config({"name": "t"}).analog
    for key, value in BLOCK_DEFAULTS.items():
        assert config_dict(validate_config({"name": "t"}))["analog"][key] == value, key
    assert (analog.diode.up_bias, analog.diode.down_bias, analog.diode.is_) == (-0.3, 0.3, 1e-12)


def test_flatten_gives_mlflow_params():
    cfg = validate_config({"name": "t", "analog": {"hidden": [32, 16]}})
    flat = flatten(cfg)
    assert flat["name"] == "t"
    assert flat["analog.hidden"] == "32,16"
    assert flat["analog.diode.model"] == "shockley"
    assert flat["training.optimizer.lr"] == cfg.training.optimizer.lr
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in flat.values())
    assert not any(isinstance(v, dict) for v in flat.values())


def _fields(model, prefix=""):
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        sub = info.annotation if isinstance(info.annotation, type) else None
        if sub is not None and issubclass(sub, Section):
            yield from _fields(sub, f"{key}.")
        else:
            yield key, info


def test_every_schema_key_is_documented_and_its_default_valid():
    keys = dict(_fields(RootConfig))
    assert len(keys) == 98 and {"analog.diode.is", "analog.diode.lambda", "training.optimizer.lr", "hardware", "input_optimization.shift_penalty"} <= set(keys)
    for key, info in keys.items():
        assert info.description, key
    validate_config({"name": "defaults"})  # the defaults pass their own checks (validate_default)


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiment_configs_load(path):
    cfg = load_config(path)
    assert cfg.name
    if path.stem in ("xor", "iris", "wine"):
        assert cfg.data.dataset == path.stem


def test_mos_diode_parameters_reach_the_device_and_its_spice_card():
    import numpy as np

    from analog.devices import MOSDiode
    from pipeline.system.analog_block import model_from_config

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


BAD_VALUES = [None, "x", "", [], {}, [None], {"a": 1}, -1, 0, 2.5, 1e308, -1e308, True, float("nan"), float("inf")]


def test_every_key_with_every_kind_of_bad_value_gives_a_one_line_error_naming_it():
    """Each leaf of the schema set to each value above: either valid, or a ConfigError whose
    one-line message starts with that key (never another exception)."""
    tried = errors = 0
    for key, _ in _fields(RootConfig):
        for value in BAD_VALUES:
            raw: dict = {"name": "t"}
            node = raw
            *sections, leaf = key.split(".")
            for part in sections:
                node = node.setdefault(part, {})
            node[leaf] = value
            tried += 1
            try:
                validate_config(raw)
            except ConfigError as exc:
                errors += 1
                msg = str(exc)
                assert "\n" not in msg, (key, value, msg)
                assert msg.startswith(key) or f" {key}=" in msg, (key, value, msg)   # or a cross-key rule
    assert tried == 98 * len(BAD_VALUES) and errors > 0.8 * tried


@pytest.mark.parametrize("text", ["[", "{a: 1", "- x\n- y", "!!python/object/apply:os.system ['true']", "'unclosed",
                                  "a: b: c", "@x", "%TAG", "\t", "[1, [2, [3"])
def test_any_override_text_gives_a_config_or_a_one_line_error(tmp_path, text):
    path = _write(tmp_path)
    try:
        load_config(path, [f"analog.hidden={text}"])
    except ConfigError as exc:
        assert "\n" not in str(exc) and "analog.hidden" in str(exc)


@pytest.mark.parametrize("key, value", [("hardware.chips", 100_000_000), ("data.xor_samples", 1e23),
                                        ("data.xor_samples", 10**9), ("training.workers", 10**6),
                                        ("cotrain.rounds", 10**9)])
def test_sizes_beyond_any_run_are_refused_naming_the_key(tmp_path, key, value):
    section, name = key.split(".")
    raw = {"name": "big", section: {name: value}}
    if section == "hardware":
        raw["hardware"]["preset"] = "pcm"
    message = _error(raw)
    path = tmp_path / "big.yaml"          # the same written in YAML (1e23 a number there too)
    path.write_text(f"name: big\n{section}:\n  {name}: {value:g}\n" + ("  preset: pcm\n" if section == "hardware" else ""))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)
    assert message.startswith(key) and ("out of range" in message or "expected int" in message), message


def test_duplicate_keys_in_a_config_file_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: d\ntraining:\n  epochs: 3\nanalog:\n  hidden: [8]\ntraining:\n  batch_size: 4\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'training' \(first on line 2, again on line 6\)"):
        load_config(path)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_fifo_or_device_as_config_is_named_as_such(tmp_path, special):
    import os
    path = tmp_path / "pipe.yaml"
    if special == "fifo":
        os.mkfifo(path)
    else:
        path = Path(special)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(path)


@pytest.mark.parametrize("key", ["device", "variation"])
def test_a_preset_section_given_a_value_says_it_needs_a_mapping(key):
    message = _error({"name": "h", "hardware": {"preset": "pcm", key: 3}})
    assert message.startswith(f"hardware.{key}: 3 has type int; expected a mapping") and "did you mean" not in message


@pytest.mark.parametrize("raw, key", [({"name": "a\x00b"}, "name"), ({"name": "a\nb"}, "name"),
                                      ({"name": "ok", "mlflow": {"experiment": "x\x00"}}, "mlflow.experiment"),
                                      ({"name": "n" * 201}, "name")])
def test_names_with_control_characters_or_too_long_are_refused(raw, key):
    message = _error(raw)
    assert message.startswith(f"{key}: ") and ("control character" in message or "longer than 200" in message)
