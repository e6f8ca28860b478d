"""The front-end study as sweep space files: every shipped space validates against its
config, and the control trains the block as many EP epochs as the co-training, with none
of its rounds (counted here from the config file, not by the sweep code)."""
from pathlib import Path

import pytest
import yaml

from pipeline.sweep.space import check_space, parse_space, trial_config

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "experiments" / "spaces"
# space file → the config its comment runs it with
PAIRS = {"frontends.yaml": "frontends.yaml", "frontends_control.yaml": "frontends.yaml",
         "smoke.yaml": "smoke.yaml", "showcase_frontends.yaml": "smoke_hw.yaml", "iris_lr.yaml": "iris.yaml"}


def test_every_space_file_is_paired_here():
    assert {p.name for p in SPACES.glob("*.yaml")} == set(PAIRS)


@pytest.mark.parametrize("space,config", PAIRS.items())
def test_shipped_space_validates_on_its_config(space, config):
    assert f"mixsig sweep experiments/{config} --space experiments/spaces/{space}" in (SPACES / space).read_text()
    sp = parse_space(SPACES / space)
    assert check_space(sp, yaml.safe_load((ROOT / "experiments" / config).read_text())) >= len(sp.dimensions)


def _ep_epochs(cfg) -> int:
    """EP epochs a co-training gives the block: the first training, then each round's."""
    return cfg.training.epochs + cfg.cotrain.rounds * (cfg.cotrain.analog_epochs or cfg.training.epochs)


def test_control_matches_the_cotraining_epochs_without_rounds():
    base = yaml.safe_load((ROOT / "experiments" / "frontends.yaml").read_text())
    assert (base["training"]["epochs"], base["cotrain"]["rounds"], base["cotrain"]["analog_epochs"]) == (4, 1, 2)
    study, control = parse_space(SPACES / "frontends.yaml"), parse_space(SPACES / "frontends_control.yaml")
    filters = {d.key: d.values for d in study.dimensions}["digital.params.filters"]
    assert {d.key: d.values for d in control.dimensions}["digital.params.filters"] == filters
    assert study.trial_count() == 9 and control.trial_count() == 3
    for f in filters:
        cotrained = trial_config(base, {"digital.params.filters": f, "digital.retrain_method": "both"})
        ctrl = trial_config(base, {d.key: (f if d.key == "digital.params.filters" else d.values[0])
                                   for d in control.dimensions})
        assert ctrl.cotrain.rounds == 0 and cotrained.cotrain.rounds == 1
        assert ctrl.training.epochs == _ep_epochs(cotrained) == 4 + 1 * 2
        assert ctrl.digital == cotrained.digital.model_copy(update={"retrain_method": ctrl.digital.retrain_method})
