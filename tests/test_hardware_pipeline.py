"""The hardware pipeline end to end through the CLI (issue 12): `mixsig cotrain
experiments/smoke_hw.yaml` against a throwaway store, killed (SIGKILL) after `program` and
resumed; the program stage's artifacts and statistics checked against the saved chips; the
scenario metrics on the parent run; the program stage alone; bad input as one-line errors."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.test_pipeline_smoke import FASHION, _start_and_kill, artifact_paths, children, client_for, mixsig

ROOT = Path(__file__).resolve().parents[1]
SMOKE_HW = ROOT / "experiments" / "smoke_hw.yaml"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="Fashion-MNIST not available")]

PLAN = ["train-digital", "embed", "train-analog", "program", "optimize-inputs", "retrain-digital", "embed", "evaluate"]


@pytest.fixture(scope="module")
def hw_run(tmp_path_factory):
    """A co-training killed as soon as optimize-inputs starts (program has finished), then
    resumed to the end: (tmp, client, parent run, resume output)."""
    tmp = tmp_path_factory.mktemp("smoke_hw")
    out = _start_and_kill(tmp, ["cotrain", SMOKE_HW], when="[optimize-inputs r0]")
    parent_id = out.split("co-training ", 1)[1].split()[0]
    proc = mixsig(tmp, "cotrain", "--resume", parent_id)
    client = client_for(tmp)
    return tmp, client, client.get_run(parent_id), proc.stdout


def _by_stage(client, parent) -> dict:
    return {(k.data.tags["mixsig.stage"], k.data.tags["mixsig.round"]): k for k in children(client, parent)
            if k.data.tags["mixsig.status"] == "finished"}


def _at_step(client, run_id: str, key: str, step: int) -> float:
    return [m.value for m in client.get_metric_history(run_id, key) if m.step == step][-1]


def test_resume_skips_finished_stages_including_program(hw_run):
    tmp, client, parent, out = hw_run
    skipped = re.findall(r"^step \d+/8 (\S+) r0: finished in run \w+, skipped$", out, re.M)
    assert skipped == PLAN[:4], out[-3000:]
    assert parent.data.tags["mixsig.status"] == "finished"
    done = [k for k in children(client, parent) if k.data.tags["mixsig.status"] == "finished"]
    assert [k.data.tags["mixsig.stage"] for k in done] == PLAN       # hardware.frozen: no train-analog r1
    assert [k.data.tags["mixsig.stage"] for k in children(client, parent)].count("program") == 1


def test_program_stage_artifacts_and_statistics(hw_run):
    tmp, client, parent, _ = hw_run
    prog = _by_stage(client, parent)[("program", "0")]
    arts = artifact_paths(client, prog.info.run_id)
    for i in range(2):
        assert {f"chips/chip{i}/chip.json", f"chips/chip{i}/chip.npz", f"chips/chip{i}/netlist.cir",
                f"chips/chip{i}/model/model.json"} <= arts
    assert {"plots/programming.png", "plots/accuracy_vs_time.png"} <= arts
    folder = tmp / "runs" / parent.info.run_id / "03-program-r0" / "chips"
    netlist = (folder / "chip0" / "netlist.cir").read_text()
    assert netlist.lstrip().startswith(".title") and ".end" in netlist
    # |ΔG|/g_max recomputed from the saved arrays: trained conductances × k against programmed
    means, stuck_low = [], []
    for i in range(2):
        meta = json.loads((folder / f"chip{i}" / "chip.json").read_text())
        assert meta["seed"] == i                       # hardware.seed unset: the config's seed 0, + i
        g_max = meta["spec"]["device"]["g_max"]
        with np.load(folder / f"chip{i}" / "chip.npz") as chip, \
                np.load(folder / f"chip{i}" / "model" / "arrays.npz") as model:
            diffs = [np.abs(chip[f"G_prog/{k}"] - meta["scale"][k] * model[f"conductances/{k}"]).ravel() / g_max
                     for k in range(len(meta["layers"]))]
            stuck_low.append(sum(int((chip[f"stuck/{k}"] < 0).sum()) for k in range(len(meta["layers"]))))
        d = np.concatenate(diffs)
        means.append(d.mean())
        assert _at_step(client, prog.info.run_id, "chip_mean_abs_dG_rel", i) == pytest.approx(d.mean(), rel=1e-9)
        assert _at_step(client, prog.info.run_id, "chip_max_abs_dG_rel", i) == pytest.approx(d.max(), rel=1e-9)
        assert _at_step(client, prog.info.run_id, "chip_stuck_g_min", i) == stuck_low[-1]
    m = prog.data.metrics
    assert m["prog_mean_abs_dG_rel"] == pytest.approx(np.mean(means), rel=1e-9)
    # 3x the PCM programming error over a 0-25 µS range: a few percent of g_max on average
    assert 0.01 < m["prog_mean_abs_dG_rel"] < 0.2


def test_chip_accuracy_recomputed_from_the_saved_chip(hw_run):
    """Chip 0 loaded from the artifact and read at t = 0 through its own predict (a fresh
    chip reads the same noise stream) gives the accuracy the program run logged."""
    from analog.hardware import Chip
    tmp, client, parent, _ = hw_run
    runs = _by_stage(client, parent)
    prog = runs[("program", "0")]
    root = tmp / "runs" / parent.info.run_id
    with np.load(root / "01-embed-r0" / "embeddings" / "embeddings.npz") as z:
        x, y = z["x_test"].astype(float), z["y_test"]
    for i in range(2):
        chip = Chip.load(root / "03-program-r0" / "chips" / f"chip{i}")
        acc = float(np.mean(chip.predict(x, t=0.0).argmax(1) == y))
        chip.close()
        assert _at_step(client, prog.info.run_id, f"chip_acc_chip{i}", 0) == pytest.approx(acc, abs=1e-12)
    assert _at_step(client, prog.info.run_id, "time_s", 1) == 86400.0


def test_scenario_metrics_on_the_parent(hw_run):
    tmp, client, parent, _ = hw_run
    pm = parent.data.metrics
    for key in ("e2e_acc_ideal", "e2e_acc_programmed", "e2e_acc_cotrained", "e2e_acc_ideal_tmax",
                "e2e_acc_programmed_tmax", "e2e_acc_cotrained_tmax", "e2e_acc_programmed_std"):
        assert key in pm, key
    assert "e2e_acc_aware_programmed" not in pm                     # hardware.training: ideal
    runs = _by_stage(client, parent)
    prog, ev, ta = runs[("program", "0")], runs[("evaluate", "1")], runs[("train-analog", "0")]
    chips0 = [_at_step(client, prog.info.run_id, f"chip_acc_chip{i}", 0) for i in range(2)]
    chips_t = [_at_step(client, prog.info.run_id, f"chip_acc_chip{i}", 1) for i in range(2)]
    assert pm["e2e_acc_programmed"] == pytest.approx(np.mean(chips0))
    assert pm["e2e_acc_programmed_std"] == pytest.approx(np.std(chips0, ddof=1))
    assert pm["e2e_acc_programmed_tmax"] == pytest.approx(np.mean(chips_t))
    assert pm["e2e_acc_ideal"] == pytest.approx(ta.data.metrics["test_accuracy"])   # the block as trained
    cot = [_at_step(client, ev.info.run_id, f"chip_acc_chip{i}", 0) for i in range(2)]
    assert pm["e2e_acc_cotrained"] == pytest.approx(np.mean(cot))
    # harsh devices: programming costs the naive deployment accuracy
    assert pm["e2e_acc_programmed"] < pm["e2e_acc_ideal"]
    for suffix in ("", "_tmax"):
        ideal, prog_acc = pm[f"e2e_acc_ideal{suffix}"], pm[f"e2e_acc_programmed{suffix}"]
        drop, spread = ideal - prog_acc, pm[f"e2e_acc_programmed{suffix}_std"]
        tag = parent.data.tags[f"mixsig.recovered_fraction{suffix}"]
        if drop > spread and drop > 0:
            expected = (pm[f"e2e_acc_cotrained{suffix}"] - prog_acc) / drop
            assert pm[f"recovered_fraction{suffix}"] == pytest.approx(expected) and tag.startswith("defined")
        else:
            assert f"recovered_fraction{suffix}" not in pm and "within the spread" in tag
    arts = artifact_paths(client, parent.info.run_id)
    assert {"plots/accuracy_vs_time.png", "plots/accuracy_per_round.png"} <= arts
    assert "plots/accuracy_vs_time.png" in artifact_paths(client, ev.info.run_id)


def test_the_loop_chip_recovery_on_the_parent(hw_run):
    """recovered_fraction_loop from the chip in the loop (chip 0 by default) alone: its
    accuracy programmed (the program run's chip_acc_chip0) and after the round."""
    tmp, client, parent, _ = hw_run
    pm = parent.data.metrics
    prog = _by_stage(client, parent)[("program", "0")]
    p0 = _at_step(client, prog.info.run_id, "chip_acc_chip0", 0)
    assert pm["loop_chip_programmed_accuracy"] == pytest.approx(p0, abs=1e-12)
    assert _at_step(client, parent.info.run_id, "round_chip_e2e_accuracy", 0) == pytest.approx(p0, abs=1e-12)
    after = _at_step(client, parent.info.run_id, "round_chip_e2e_accuracy", 1)
    if pm["e2e_acc_ideal"] > p0:
        assert pm["recovered_fraction_loop"] == pytest.approx((after - p0) / (pm["e2e_acc_ideal"] - p0))
    else:
        assert "recovered_fraction_loop" not in pm


def test_another_chip_in_the_loop(hw_run):
    """hardware.loop_chip=1: a frozen co-training from the same trained block puts chip 1 (seed
    hardware seed + 1) in the loop of input optimisation and retraining; round 0 is chip 1 as
    programmed, and the recovery is chip 1's."""
    tmp, client, parent, _ = hw_run
    ta = _by_stage(client, parent)[("train-analog", "0")]
    proc = mixsig(tmp, "cotrain", SMOKE_HW, "--from-run", ta.info.run_id, "--set", "hardware.loop_chip=1", "-q")
    run = client.get_run(proc.stdout.split("co-training ", 1)[1].split()[0])
    runs = _by_stage(client, run)
    prog, opt, ret = runs[("program", "0")], runs[("optimize-inputs", "0")], runs[("retrain-digital", "0")]
    assert opt.data.metrics["inputopt_on_chip_seed"] == 1.0          # smoke_hw: seed 0, chip i has seed 0 + i
    p1 = _at_step(client, prog.info.run_id, "chip_acc_chip1", 0)
    assert _at_step(client, run.info.run_id, "round_chip_e2e_accuracy", 0) == pytest.approx(p1, abs=1e-12)
    after = ret.data.metrics["chip1_end_to_end_test_accuracy"]
    assert _at_step(client, run.info.run_id, "round_chip_e2e_accuracy", 1) == pytest.approx(after, abs=1e-12)
    pm = run.data.metrics
    assert pm["loop_chip_programmed_accuracy"] == pytest.approx(p1, abs=1e-12)
    if pm["e2e_acc_ideal"] > p1:
        assert pm["recovered_fraction_loop"] == pytest.approx((after - p1) / (pm["e2e_acc_ideal"] - p1))


def test_program_alone_and_bad_input(hw_run, tmp_path):
    tmp, client, parent, _ = hw_run
    runs = _by_stage(client, parent)
    ta, ev = runs[("train-analog", "0")], runs[("evaluate", "1")]
    exp = client.get_experiment_by_name("smoke_hw")

    def programs() -> int:
        return len(client.search_runs([exp.experiment_id], filter_string="tags.`mixsig.stage` = 'program'"))
    before = programs()
    proc = mixsig(tmp, "program", "--from-run", ta.info.run_id, "--set", "hardware.chips=1", "-q")
    assert "program run" in proc.stdout
    # --from-run of a run that is not a train-analog run: one line naming the run
    for run in (ev, parent):
        p = mixsig(tmp, "program", "--from-run", run.info.run_id, check=False)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert run.info.run_id in p.stderr and "train-analog" in p.stderr, p.stderr
    # a config without a hardware section
    block = tmp / "runs" / parent.info.run_id / "02-train-analog-r0" / "analog_model"
    p = mixsig(tmp, "program", ROOT / "experiments" / "smoke.yaml", "--input", f"analog={block}", check=False)
    assert p.returncode == 2 and "hardware" in p.stderr, p.stderr
    # bad hardware sections, before any work
    for sets, words in ((["hardware.chips=0"], ["hardware.chips", "0"]),
                        (["hardware.times=[0, -5]"], ["hardware.times[1]", "-5"]),
                        (["hardware.times=[86400, 0]"], ["hardware.times", "increasing"]),
                        (["hardware.loop_chip=2"], ["hardware.loop_chip=2", "hardware.chips=2"])):
        p = mixsig(tmp, "cotrain", SMOKE_HW, *[a for s in sets for a in ("--set", s)], check=False)
        assert p.returncode == 2 and p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
        assert all(w in p.stderr for w in words), (sets, p.stderr)
    no_preset = tmp_path / "no_preset.yaml"
    no_preset.write_text(SMOKE_HW.read_text().replace("  preset: pcm\n", ""))
    p = mixsig(tmp, "cotrain", no_preset, check=False)
    assert p.returncode == 2 and "hardware.frozen" in p.stderr and "hardware.preset" in p.stderr, p.stderr
    assert programs() == before + 1                         # the one above; none from the bad input


def test_robustness_command_logs_a_map_and_spot_checks(hw_run):
    tmp, client, parent, _ = hw_run
    ta = _by_stage(client, parent)[("train-analog", "0")]
    proc = mixsig(tmp, "robustness", parent.info.run_id, "--axes", "prog_sigma,stuck", "--grid",
                  "stuck=0.001,0.5", "--seeds", "2", "--engine", "ngspice", "--spot-samples", "5", "-q")
    assert "ideal block:" in proc.stdout and "breaks" in proc.stdout, proc.stdout
    exp = client.get_experiment_by_name("smoke_hw")
    run = client.search_runs([exp.experiment_id], filter_string="tags.`mixsig.stage` = 'robustness'")[0]
    assert run.data.tags["mixsig.status"] == "finished"
    assert run.data.tags["mixsig.artifact.analog"] == ta.info.run_id        # the parent's last train-analog run
    m = run.data.metrics
    assert m["ideal_test_accuracy"] == pytest.approx(ta.data.metrics["test_accuracy"])
    history = sorted(client.get_metric_history(run.info.run_id, "stuck_value"), key=lambda x: x.step)
    assert [x.value for x in history] == [0.001, 0.5]
    assert m["stuck_breaking_value"] == 0.5 and m["stuck_spot_max_abs_dy"] < 1e-6
    assert m["stuck_spot_acc_native"] == m["stuck_spot_acc_ngspice"]
    assert {"robustness.png", "robustness.json", "robustness.txt"} <= artifact_paths(client, run.info.run_id)
    p = mixsig(tmp, "robustness", ta.info.run_id, "--grid", "stuck=", check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "--grid stuck" in p.stderr, p.stderr
    p = mixsig(tmp, "robustness", "0123456789abcdef0123456789abcdef", check=False)
    assert p.returncode == 2 and "0123456789abcdef0123456789abcdef" in p.stderr
    # compare: the scenario metrics side by side and accuracy against time after programming
    proc = mixsig(tmp, "compare", "--experiment", "smoke_hw", "--output", "c.png", "--time-output", "ct.png")
    assert "e2e_acc_programmed" in proc.stdout and "recovered_fraction" in proc.stdout
    assert (tmp / "ct.png").stat().st_size > 1000
