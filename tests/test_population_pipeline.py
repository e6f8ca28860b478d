"""Population co-training and per-chip encoders end to end on the smoke hardware config
(experiments/smoke_hw.yaml): the held-out chips are never read by retraining (checked by the
seeds of the chips whose gradients were taken) and their scenario means are the program
stage's per-chip accuracies averaged by hand; `hardware.encoder_per_chip` runs one nested
co-training per chip as Ray tasks, and its summary is each chip's own figures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_pipeline_smoke import FASHION, artifact_paths, children, client_for

ROOT = Path(__file__).resolve().parents[1]
SMOKE_HW = ROOT / "experiments" / "smoke_hw.yaml"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="Fashion-MNIST not available")]

THROUGH = {"digital.retrain_method": "through-analog", "digital.through_loss": "cross_entropy"}


def _at_step0(client, run_id: str, key: str) -> float:
    return [m.value for m in client.get_metric_history(run_id, key) if m.step == 0][-1]


TARGETS = {"digital.retrain_method": "targets", "input_optimization.cost": "cross_entropy"}


@pytest.mark.parametrize("method", [THROUGH, TARGETS], ids=["through-analog", "targets"])
def test_population_cotraining_never_reads_the_held_out_chips(tmp_path, monkeypatch, method):
    from analog.hardware import Chip
    from pipeline.hardware.settings import chip_seeds
    from pipeline.cotraining.run import run_cotrain
    from pipeline.hardware.population import held_out_indices, loop_indices
    from pipeline.flow import load_config_with_overrides
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MIXSIG_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cfg = load_config_with_overrides(SMOKE_HW, [f"{k}={v}" for k, v in method.items()] +
                                     ["hardware.chips=4", "hardware.loop_chips=[2,0]", "hardware.seed=40"])
    read = []
    real = Chip.gradients

    def spy(self, *args, **kwargs):          # the real gradients, with the seed of the chip read
        read.append(self.seed)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Chip, "gradients", spy)
    parent_id = run_cotrain(cfg, workdir=tmp_path / "runs", verbose=0)
    seeds = chip_seeds(cfg)
    assert seeds == [40, 41, 42, 43]
    assert loop_indices(cfg) == [2, 0] and held_out_indices(cfg) == [1, 3]
    assert set(read) == {42, 40}                     # the loop chips, both of them
    assert not {41, 43} & set(read)                  # held-out chips: never read by training
    client = client_for(tmp_path)
    parent = client.get_run(parent_id)
    m = parent.data.metrics
    program = next(k for k in children(client, parent) if k.data.tags["mixsig.stage"] == "program")
    acc = [_at_step0(client, program.info.run_id, f"chip_acc_chip{j}") for j in range(4)]
    assert m["e2e_acc_programmed_heldout"] == pytest.approx((acc[1] + acc[3]) / 2)
    assert m["e2e_acc_programmed_loop"] == pytest.approx((acc[2] + acc[0]) / 2)
    evaluate = next(k for k in children(client, parent) if k.data.tags["mixsig.stage"] == "evaluate")
    after = [_at_step0(client, evaluate.info.run_id, f"chip_acc_chip{j}") for j in range(4)]
    assert m["e2e_acc_cotrained_heldout"] == pytest.approx((after[1] + after[3]) / 2)
    drop = m["e2e_acc_ideal"] - m["e2e_acc_programmed_heldout"]
    if drop > 0:
        assert m["recovered_fraction_heldout"] == pytest.approx(
            (m["e2e_acc_cotrained_heldout"] - m["e2e_acc_programmed_heldout"]) / drop)


def test_encoder_per_chip_runs_one_nested_cotraining_per_chip_as_ray_tasks(tmp_path):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", MIXSIG_HOME=str(tmp_path),
               PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    args = [sys.executable, "-m", "pipeline", "cotrain", str(SMOKE_HW), "--num-cpus", "2", "-q",
            "--set", "hardware.encoder_per_chip=true", "--set", "hardware.times=[0]"]
    for k, v in THROUGH.items():
        args += ["--set", f"{k}={v}"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_per_chip_runs(tmp_path, proc.stdout.split("co-training one encoder per chip ", 1)[1].split()[0])


def check_per_chip_runs(tmp_path, parent_id: str) -> None:
    client = client_for(tmp_path)
    parent = client.get_run(parent_id)
    assert parent.data.tags["mixsig.stage"] == "cotrain-per-chip" and parent.data.tags["mixsig.status"] == "finished"
    kids = children(client, parent)
    shared = [k.data.tags["mixsig.stage"] for k in kids if k.data.tags["mixsig.stage"] != "cotrain"]
    assert shared == ["train-digital", "embed", "train-analog"]
    chips = sorted((k for k in kids if k.data.tags["mixsig.stage"] == "cotrain"),
                   key=lambda r: int(r.data.params["hardware.loop_chip"]))
    assert [k.data.params["hardware.loop_chip"] for k in chips] == ["0", "1"]
    assert all(k.data.tags["mixsig.status"] == "finished" for k in chips)
    # both start from the one shared block: the train-analog run of the parent
    ta = next(k for k in kids if k.data.tags["mixsig.stage"] == "train-analog").info.run_id
    assert all(json.loads(k.data.tags["mixsig.initial_inputs"])["analog"] == ta for k in chips)
    assert {"per_chip_summary.md", "per_chip_summary.json"} <= artifact_paths(client, parent_id)
    # the summary: each chip's own accuracy after its round, read from its run here
    own = []
    for k, run in enumerate(chips):
        hist = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "round_chip_e2e_accuracy")}
        own.append(hist[max(hist)])
        programmed = run.data.metrics["loop_chip_programmed_accuracy"]
        assert programmed == pytest.approx(_at_step0(client, _program_run(client, run), f"chip_acc_chip{k}"))
    m = parent.data.metrics
    assert m["e2e_acc_per_chip_encoders"] == pytest.approx(np.mean(own))
    progs = [r.data.metrics["loop_chip_programmed_accuracy"] for r in chips]
    assert m["e2e_acc_programmed"] == pytest.approx(np.mean(progs))


def _program_run(client, chip_run) -> str:
    return next(k.info.run_id for k in children(client, chip_run) if k.data.tags["mixsig.stage"] == "program")


def test_summary_table_by_hand():
    from pipeline.cotraining.per_chip import summary_table
    rows = [{"chip": 0, "run_id": "a" * 32, "ideal": 0.9, "programmed": 0.7, "own_encoder": 0.88, "recovered": 0.9,
             "all_chips_mean": 0.8},
            {"chip": 1, "run_id": "b" * 32, "ideal": 0.9, "programmed": 0.8, "own_encoder": 0.86, "recovered": 0.6,
             "all_chips_mean": 0.82}]
    table, m = summary_table(rows)
    assert m["e2e_acc_per_chip_encoders"] == pytest.approx(0.87)
    assert m["recovered_fraction_per_chip"] == pytest.approx((0.87 - 0.75) / (0.9 - 0.75))
    assert table.count("\n") == 5 and "| 1 | 0.8000 | 0.8600 | 0.60 |" in table
