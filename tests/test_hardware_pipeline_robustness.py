"""The robustness map's pieces without MLflow (pipeline/hardware/robustness.py, pipeline/hardware/chip_metrics.py): the
grid parser's errors, each axis's device spec, the sweep's figures recomputed by programming
the chips by hand, the breaking point, recovered_fraction's rule, the frozen co-training plan."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.hardware import chip_metrics
from pipeline.hardware import settings as hardware_settings
from pipeline.hardware import robustness as rb

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def block():
    from analog.builders import build_dense_network
    model = build_dense_network(4, 3, hidden=(6,), seed=3)
    model.compile("mse", "adam")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (60, 4))
    y = model.predict(x).argmax(1)              # labels the ideal block gets right: accuracy 1
    yield model, x, y
    model.close()


@pytest.mark.parametrize("items, axes, words", [
    (["stuck="], None, ["--grid stuck", "no values"]),
    (["stuck=,"], None, ["--grid stuck", "no values"]),
    (["bogus=1,2"], None, ["bogus", "prog_sigma"]),
    (["levels=4,1"], None, ["levels", "1", ">= 2"]),
    (["levels=4.5"], None, ["levels", "integers"]),
    (["on_off=10,1"], None, ["on_off", "> 1"]),
    (["stuck=0.1,1.5"], None, ["stuck", "[0, 1]"]),
    (["prog_sigma=-0.1"], None, ["prog_sigma", ">= 0"]),
    ([], ["levels", "nope"], ["'nope'", "unknown"]),
])
def test_bad_grids_name_the_axis(items, axes, words):
    with pytest.raises(ValueError) as err:
        rb.parse_grid(items, axes)
    assert all(w in str(err.value) for w in words), str(err.value)
    assert "\n" not in str(err.value)


def test_grid_selection_and_override():
    g = rb.parse_grid(["levels=8,4", "stuck=0.2"], ["prog_sigma"])
    assert g == {"prog_sigma": rb.AXES["prog_sigma"][0], "levels": (8, 4), "stuck": (0.2,)}
    assert list(rb.parse_grid([])) == list(rb.AXES)


def test_each_axis_changes_one_thing_of_the_ideal_preset():
    from analog.hardware import resolve_hardware
    ideal = resolve_hardware("ideal")
    g_max = ideal.device.g_max
    spec, t = rb.spec_for("prog_sigma", 0.1)
    assert (spec.device.prog_noise, spec.device.prog_sigma, t) == ("constant", pytest.approx(0.1 * g_max), 0.0)
    spec, _ = rb.spec_for("on_off", 10.0)
    assert spec.device.g_max / spec.device.g_min == pytest.approx(10.0)
    spec, _ = rb.spec_for("stuck", 0.2)
    assert (spec.device.stuck_g_min, spec.device.stuck_g_max) == (0.1, 0.1)
    spec, t = rb.spec_for("drift_time", 3600.0)
    assert spec.device.drift == "pcm" and t == 3600.0 and spec.drift_compensation is False
    spec, _ = rb.spec_for("gain_sigma", 0.05)
    assert spec.variation.gain_sigma == 0.05 and spec.device == ideal.device
    spec, _ = rb.spec_for("levels", 4)
    assert spec.device.levels == 4 and spec.variation == ideal.variation


def test_sweep_figures_match_chips_programmed_by_hand(block):
    from analog.hardware import program, resolve_hardware
    model, x, y = block
    ideal, results = rb.sweep(model, x, y, {"prog_sigma": (0.0, 0.3), "stuck": (0.5,)}, seeds=3, threshold=0.05)
    assert ideal == 1.0
    ps, st = results
    assert ps.mean[0] == 1.0 and ps.std[0] == 0.0          # no error: the chip is the trained block
    by_hand = []
    for seed in range(3):
        spec = resolve_hardware("ideal", {"device": {"prog_noise": "constant", "prog_sigma": 0.3 * 2e-5},
                                          "drift_compensation": False})
        chip = program(model, spec, seed)
        by_hand.append(np.mean(chip.predict(x).argmax(1) == y))
        chip.close()
    assert ps.accs[1] == pytest.approx(by_hand)
    assert ps.mean[1] == pytest.approx(np.mean(by_hand)) and ps.std[1] == pytest.approx(np.std(by_hand, ddof=1))
    assert ps.breaking == (0.3 if np.mean(by_hand) < 1.0 - 0.05 else None)
    assert st.mean[0] < 0.9 and st.breaking == 0.5           # half the devices stuck breaks a block
    rows = rb.table(ideal, results)
    assert rows[0][:4] == ["axis", "value", "unit", "accuracy"] and len(rows) == 4
    assert [r[-1] for r in rows[1:]].count("breaks") == (ps.breaking is not None) + 1


def test_diode_axes_apply_to_their_diode_kind(block):
    model, _, _ = block
    assert rb.applies("is_sigma", model) and not rb.applies("vto_sigma", model)   # Shockley diodes
    assert rb.applies("levels", model)


def test_recovered_fraction_rule():
    m = {"e2e_acc_ideal": 0.80, "e2e_acc_programmed": 0.60, "e2e_acc_programmed_std": 0.02, "e2e_acc_cotrained": 0.75}
    value, why = chip_metrics.recovered_fraction(m)
    assert value == pytest.approx((0.75 - 0.60) / (0.80 - 0.60))
    value, why = chip_metrics.recovered_fraction({**m, "e2e_acc_programmed_std": 0.25})
    assert value is None and "within the spread" in why
    value, why = chip_metrics.recovered_fraction({k: v for k, v in m.items() if k != "e2e_acc_cotrained"})
    assert value is None and "needs" in why
    aware = {k.replace("programmed", "aware_programmed"): v for k, v in m.items()}
    assert chip_metrics.recovered_fraction(aware)[0] == pytest.approx(0.75)


def test_eval_times_and_seeds():
    from pipeline.config import validate_config
    raw = {"name": "t", "seed": 5, "hardware": {"seed": None, "chips": 3, "times": [3600.0, 86400.0]}}
    cfg = validate_config(raw)
    assert hardware_settings.eval_times(cfg) == [0.0, 3600.0, 86400.0] and hardware_settings.chip_seeds(cfg) == [5, 6, 7]
    raw["hardware"].update(seed=10, times=[0.0, 60.0])
    cfg = validate_config(raw)
    assert hardware_settings.eval_times(cfg) == [0.0, 60.0] and hardware_settings.chip_seeds(cfg) == [10, 11, 12]


def test_frozen_plan_trains_and_programs_once():
    from pipeline.config import load_config
    from pipeline.cotraining.run import make_plan
    cfg = load_config(ROOT / "experiments" / "smoke_hw.yaml", ["cotrain.rounds=2"])
    assert make_plan(cfg) == [("train-digital", 0), ("embed", 0), ("train-analog", 0), ("program", 0),
                              ("optimize-inputs", 0), ("retrain-digital", 0), ("embed", 1), ("optimize-inputs", 1),
                              ("retrain-digital", 1), ("embed", 2), ("evaluate", 2)]
    cfg = cfg.model_copy(update={"hardware": cfg.hardware.model_copy(update={"frozen": False})})
    plan = make_plan(cfg)
    assert plan.count(("program", 1)) == 1 and plan.count(("train-analog", 2)) == 1 and plan[-2:] == [
        ("program", 2), ("evaluate", 2)]


def test_an_axis_is_continued_until_it_breaks(block):
    assert rb.extend("levels", [8, 4]) == 2 and rb.extend("levels", [2]) is None
    assert rb.extend("stuck", [0.2, 0.4]) == pytest.approx(0.8) and rb.extend("stuck", [0.6, 1.0]) is None
    assert rb.extend("stuck", [0.4, 0.8]) == 1.0                       # capped: every device stuck
    assert rb.extend("on_off", [10.0, 5.0]) == pytest.approx(2.5) and rb.extend("on_off", [1.1]) is None
    assert rb.extend("prog_sigma", [0.01, 0.03]) == pytest.approx(0.09)
    model, x, y = block
    _, (res,) = rb.sweep(model, x, y, {"stuck": (0.0, 0.05)}, seeds=2, threshold=0.05, more=4)
    assert res.values[:2] == [0.0, 0.05] and len(res.values) <= 6
    if res.breaking is None:
        assert len(res.values) == 6 or res.values[-1] == 1.0
    else:       # continued exactly until it broke
        assert res.values[-1] == res.breaking and res.mean[-1] < 1.0 - 0.05
        assert all(m >= 1.0 - 0.05 for m in res.mean[:-1])


def test_continuation_rounds_and_stops_at_physical_limits():
    assert rb.extend("gain_sigma", [0.2, 0.3]) == 0.45                 # not 0.44999999999999996
    assert rb.extend("drift_time", [3.15e7, 3.15e9]) is None           # not past a century
    assert rb.extend("drift_time", [3600.0, 86400.0]) == pytest.approx(2.07e6)
