"""A population of chips as one block (analog.hardware.ChipPopulation, hardware.loop_chips): its
gradient against the mean of the chips' own gradients and against central differences of the
mean cost written out here; its accuracy from the chips' solves by hand; the config's refusals;
the held-out recovery worked by hand."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analog import Block
from analog.hardware import ChipPopulation, program
from pipeline.config.errors import ConfigError
from pipeline.config.loading import validate_config
from pipeline.hardware.population import held_out_indices, loop_indices, split_recovery
from tests.analog_circuits import central_differences, four_input_block, mse_to_half_volt, steady_chip_spec


@pytest.fixture(scope="module")
def chips():
    model, x, y = four_input_block(30, data_seed=5, up_bias=-0.3, down_bias=0.3)
    spec = steady_chip_spec()
    made = [program(model, spec, seed=s) for s in (11, 12, 13)]
    yield made, x, y
    for c in made:
        c.close()
    model.close()


def test_population_gradient_is_the_mean_of_each_chips_own_gradient(chips):
    made, x, y = chips
    pop = ChipPopulation(made)
    assert isinstance(pop, Block) and pop.seeds == [11, 12, 13]
    got = pop.gradients(x, y, input_grad=True)
    own = [c.gradients(x, y, input_grad=True) for c in made]     # each chip alone
    assert got.used.all()
    by_hand = (own[0].input_grad + own[1].input_grad + own[2].input_grad) / 3
    assert np.allclose(got.input_grad, by_hand, rtol=1e-10, atol=0)
    assert np.allclose(got.loss, (own[0].loss + own[1].loss + own[2].loss) / 3)
    for k in range(len(got.grads)):
        assert np.allclose(got.grads[k], sum(o.grads[k] for o in own) / 3)
    # the chips differ, so the mean is none of them
    assert not np.allclose(own[0].input_grad, own[1].input_grad, rtol=1e-3)


def test_population_gradient_matches_differences_of_the_mean_cost(chips):
    made, x, y = chips
    pop = ChipPopulation(made)
    xs, ys = x[:4], y[:4]
    g = pop.gradients(xs, ys, method="exact").input_grad
    fd = central_differences(lambda xv: np.mean([mse_to_half_volt(c.predict(xv), ys) for c in made], axis=0), xs)
    assert np.allclose(g, fd, rtol=1e-4, atol=1e-7)
    ep = pop.gradients(xs, ys, input_grad=True).input_grad
    assert ep.ravel() @ fd.ravel() / (np.linalg.norm(ep) * np.linalg.norm(fd)) > 0.999


def test_population_accuracy_is_the_mean_of_the_chips_solved_by_hand(chips):
    made, x, y = chips
    pop = ChipPopulation(made)
    each = []
    for c in made:
        out = c.circuit.outputs(c.engine("native").solve(c.conductances_at(0.0), x).v)
        each.append(np.mean(out.argmax(1) == y))
    assert pop.accuracy(x, y) == pytest.approx(np.mean(each))
    assert pop.scores(x, y)["accuracy"] == pytest.approx(np.mean(each))


def test_a_population_refuses_a_chip_twice(chips):
    made, _, _ = chips
    with pytest.raises(ValueError, match="seeds"):
        ChipPopulation([made[0], made[0]])
    with pytest.raises(ValueError, match="at least one"):
        ChipPopulation([])


def _cfg(hardware: dict, **digital) -> dict:
    return {"name": "t", "data": {"dataset": "xor"}, "digital": {"retrain_method": "through-analog", **digital},
            "hardware": {"preset": "pcm", "frozen": True, **hardware}}


@pytest.mark.parametrize("method", ["targets", "both", "through-analog"])
def test_every_retrain_method_takes_a_population(method):
    """Input optimisation runs on the population too (its mean gradient), so no method is refused."""
    cfg = validate_config(_cfg({"chips": 4, "loop_chips": 2}, retrain_method=method))
    assert loop_indices(cfg) == [0, 1] and held_out_indices(cfg) == [2, 3]


def test_loop_chips_count_and_list_give_loop_and_held_out_chips():
    cfg = validate_config(_cfg({"chips": 12, "loop_chips": 4}))
    assert loop_indices(cfg) == [0, 1, 2, 3] and held_out_indices(cfg) == list(range(4, 12))
    cfg = validate_config(_cfg({"chips": 5, "loop_chips": [4, 1]}))
    assert loop_indices(cfg) == [4, 1] and held_out_indices(cfg) == [0, 2, 3]
    one = validate_config(_cfg({"chips": 3, "loop_chip": 2}))
    assert loop_indices(one) == [2] and held_out_indices(one) == []


@pytest.mark.parametrize("hardware, digital, words", [
    ({"chips": 4, "loop_chips": [1, 1]}, {}, ["hardware.loop_chips=[1, 1]", "twice"]),
    ({"chips": 4, "loop_chips": [0, 4]}, {}, ["hardware.loop_chips=[0, 4]", "out of range", "hardware.chips=4"]),
    ({"chips": 4, "loop_chips": [-1]}, {}, ["hardware.loop_chips=[-1]", "out of range"]),
    ({"chips": 4, "loop_chips": 5}, {}, ["hardware.loop_chips=5", "out of range"]),
    ({"chips": 4, "loop_chips": 4}, {}, ["hardware.loop_chips=4", "no held-out chip"]),
    ({"chips": 3, "loop_chips": [0, 2, 1]}, {}, ["hardware.loop_chips=[0, 2, 1]", "no held-out chip"]),
    ({"chips": 4, "loop_chips": []}, {}, ["hardware.loop_chips=[]", "empty"]),
    ({"chips": 4, "loop_chips": 0}, {}, ["hardware.loop_chips=0", "empty"]),
    ({"chips": 4, "loop_chips": 2, "frozen": False}, {}, ["hardware.loop_chips=2", "hardware.frozen"]),
    ({"chips": 4, "loop_chips": 2, "loop_chip": 3}, {}, ["hardware.loop_chips=2", "hardware.loop_chip=3"]),
    ({"chips": 4, "loop_chips": 2, "encoder_per_chip": True}, {}, ["hardware.loop_chips", "encoder_per_chip"]),
    ({"chips": 4, "encoder_per_chip": True, "frozen": False}, {}, ["hardware.encoder_per_chip", "frozen"]),
])
def test_loop_chips_refusals_name_the_key(hardware, digital, words):
    with pytest.raises(ConfigError) as err:
        validate_config(_cfg(hardware, **digital))
    msg = str(err.value)
    assert all(w in msg for w in words) and "\n" not in msg, msg


def test_held_out_recovery_by_hand():
    m = {"e2e_acc_ideal": 0.90, "e2e_acc_programmed_heldout": 0.80, "e2e_acc_cotrained_heldout": 0.88,
         "e2e_acc_programmed_loop": 0.70, "e2e_acc_cotrained_loop": 0.89}
    got = split_recovery(m)
    assert got["recovered_fraction_heldout"] == pytest.approx(0.08 / 0.10)
    assert got["recovered_fraction_loop_chips"] == pytest.approx(0.19 / 0.20)
    assert split_recovery({"e2e_acc_ideal": 0.9}) == {}
    assert "recovered_fraction_heldout" not in split_recovery({**m, "e2e_acc_programmed_heldout": 0.95})

def test_split_recovery_names_the_trim_alone_and_with_the_encoder():
    m = {"e2e_acc_ideal": 0.90, "e2e_acc_programmed_heldout": 0.70, "e2e_acc_cotrained_heldout": 0.80,
         "e2e_acc_cotrained_trimmed_heldout": 0.88, "e2e_acc_programmed_trimmed_heldout": 0.85}
    r = split_recovery(m)
    assert r["recovered_fraction_heldout"] == pytest.approx(0.10 / 0.20)
    assert r["recovered_fraction_heldout_trimmed"] == pytest.approx(0.18 / 0.20)
    assert r["recovered_fraction_heldout_trim_only"] == pytest.approx(0.15 / 0.20)
    assert "recovered_fraction_loop_chips" not in r


def test_trimmed_recovery_by_hand_named_the_same_after_aware_training(tmp_path):
    """The co-training summary's recovered fractions of the trimmed scenarios (it tags each
    untrimmed one on the active MLflow run, here a throwaway store)."""
    import mlflow

    from pipeline.cotraining.summary import _recovery
    trimmed = lambda metrics: {k: v for k, v in _recovery(metrics, {}).items() if "trimmed" in k}
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run():
        for programmed in ("programmed", "aware_programmed"):
            m = {"e2e_acc_ideal": 0.90, f"e2e_acc_{programmed}": 0.70, f"e2e_acc_{programmed}_std": 0.01,
                 "e2e_acc_cotrained_trimmed": 0.88, f"e2e_acc_{programmed}_trimmed": 0.85}
            assert trimmed(m) == {"recovered_fraction_cotrained_trimmed": pytest.approx(0.18 / 0.20),
                                  "recovered_fraction_programmed_trimmed": pytest.approx(0.15 / 0.20)}
            assert trimmed({k: v for k, v in m.items() if "trimmed" not in k}) == {}
            # a drop within the spread across chips: not defined
            assert trimmed({**m, f"e2e_acc_{programmed}_std": 0.5}) == {}
    mlflow.set_tracking_uri(before)


@pytest.mark.parametrize("args, words", [
    (["--set", "hardware.loop_chips=[1,1]", "--set", "digital.retrain_method=through-analog"],
     ["hardware.loop_chips=[1, 1]", "twice"]),
    (["--set", "hardware.loop_chips=2", "--set", "digital.retrain_method=through-analog"],
     ["hardware.loop_chips=2", "no held-out chip"]),
    (["--address", "127.0.0.1:1"], ["--address", "hardware.encoder_per_chip"]),
])
def test_cotrain_refuses_bad_population_input_in_one_line(tmp_path, args, words):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'never.db'}",
           "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "pipeline", "cotrain", str(root / "experiments" / "smoke_hw.yaml"),
                          *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert all(w in out.stderr for w in words), out.stderr
    assert not (tmp_path / "never.db").exists()
