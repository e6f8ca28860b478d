"""experiments/frontends.py's bookkeeping (no training): the control's epochs, the claim
of a command another copy runs, the table."""
import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("frontends", ROOT / "experiments" / "frontends.py")
frontends = importlib.util.module_from_spec(spec)
spec.loader.exec_module(frontends)


def test_control_has_the_cotraining_epochs_and_no_rounds(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"training": {"epochs": 4}, "cotrain": {"rounds": 2, "analog_epochs": 3}}))
    assert frontends.control_overrides(cfg, []) == ["cotrain.rounds=0", "training.epochs=10"]
    assert frontends.control_overrides(cfg, ["cotrain.rounds=1"]) == ["cotrain.rounds=0", "training.epochs=7"]
    cfg.write_text(yaml.safe_dump({"training": {"epochs": 4}, "cotrain": {"rounds": 1}}))   # analog_epochs unset
    assert frontends.control_overrides(cfg, []) == ["cotrain.rounds=0", "training.epochs=8"]


def test_shipped_configs_control():
    assert frontends.control_overrides(ROOT / "experiments" / "frontends.yaml", []) == \
        ["cotrain.rounds=0", "training.epochs=6"]
    assert frontends.control_overrides(ROOT / "experiments" / "fashion_mnist_ebana.yaml", []) == \
        ["cotrain.rounds=0", "training.epochs=2"]


def test_in_progress(tmp_path):
    log = tmp_path / "x.log"
    assert not frontends.in_progress(log)
    log.write_text("\n$ mixsig cotrain a\n[exit 0 after 3 s]\n\n$ mixsig cotrain b\nco-training ...\n")
    assert frontends.in_progress(log)
    log.write_text(log.read_text() + "[exit 1 after 2 s]\n")
    assert not frontends.in_progress(log)


def test_table_gain_is_best_method_minus_control():
    row = {"name": "cnn8", "label": "CNN", "macs": 743232.0, "digital": 0.91, "analog_first": 0.905,
           "control": 0.910, "targets": 0.912, "through-analog": 0.921, "both": 0.915}
    line = frontends.table([row]).splitlines()[-1]
    assert line.startswith("| CNN | 0.743 M | 91.00 | 90.50 | 91.00 | 91.20 | 92.10 | 91.50 |")
    assert line.endswith("| +1.10 |")
    assert frontends.table([{"name": "p", "label": "P", "digital": 0.8}]).splitlines()[-1].endswith("| – |")


def test_runs_of_an_edited_config_are_not_reused():
    want = frontends.front_end_params("small")
    assert want["seed"] == "0" and "digital.retrain_method" not in want
    assert frontends.same_settings(dict(want), want)
    older = {k: v for k, v in want.items() if k != "digital.through_lr"}   # a key the schema added later
    assert frontends.same_settings(older, want)
    assert not frontends.same_settings({**want, "digital.epochs": "16"}, want)
    no_aug = {k: v for k, v in want.items() if not k.startswith("digital.params.augment")}
    assert not frontends.same_settings(no_aug, want)                       # an encoder parameter removed
    assert frontends.same_settings({"x": "1"}, None)
    cnn8 = frontends.front_end_params("cnn8", ["seed=3"])
    assert cnn8["digital.params.filters"] == "8,16,32" and cnn8["seed"] == "3"
