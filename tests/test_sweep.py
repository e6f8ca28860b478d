"""`mixsig sweep` on Ray Tune (issue 16).

Bad input is refused before Ray starts (in process, no Ray). The sweeps themselves run the
CLI in a subprocess (an embedded Ray with 2 CPUs, shut down when the command ends, so no Ray
leaks into the other tests) on a tiny xor block trained for 3 epochs (slow: > 1 min): 4 trials, 2 at a time,
checked against the MLflow store (nested runs, params, overlap of the trials in time), the
results table (best point recomputed here from the table) and the best config (validated
by the config loader, as `cotrain` does); a sweep killed (SIGKILL) midway and resumed runs
no finished trial again (slow).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "sweep-tiny", "seed": 0,
    "data": {"dataset": "xor", "xor_samples": 64, "xor_noise": 0.1},
    "analog": {"hidden": [4], "gain": 4.0,
               "diode": {"model": "shockley", "is": 1.0e-12, "up_bias": -0.3, "down_bias": 0.3}},
    "training": {"beta": 1.0e-7, "optimizer": {"name": "adam", "lr": 0.03}, "epochs": 3, "batch_size": 8},
    "baseline": {"enabled": False},
}
SPACE = {"searcher": "grid", "stages": ["train-analog"], "seeds": [0, 1],
         "space": {"training.optimizer.lr": [0.01, 0.05]}}


def write(tmp: Path, config=None, space=None) -> tuple[Path, Path]:
    cfg, spc = tmp / "tiny.yaml", tmp / "space.yaml"
    cfg.write_text(yaml.safe_dump(config or TINY))
    spc.write_text(yaml.safe_dump(space or SPACE))
    return cfg, spc


def env(tmp: Path, **extra) -> dict:
    e = dict(os.environ, MIXSIG_HOME=str(tmp / "home"), PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    e.pop("MLFLOW_TRACKING_URI", None)
    e.pop("RAY_ADDRESS", None)
    e.update(extra)
    return e


def mixsig(tmp: Path, *args, timeout=900, **extra):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp, env=env(tmp, **extra),
                          capture_output=True, text=True, timeout=timeout)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def client(uri: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def sweep_runs(c, experiment="sweep-tiny"):
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    sweeps = [r for r in runs if r.data.tags.get("mixsig.stage") == "sweep"]
    return runs, sweeps


def trials_of(runs, sweep_id):
    return [r for r in runs if r.data.tags.get("mixsig.sweep") == sweep_id]


# --------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("space,words", [
    ({"space": {"training.optimizer.lrr": [0.01]}}, ["training.optimizer.lrr", "unknown key"]),
    ({"space": {"analog.gain": [0.5]}}, ["analog.gain", "0.5", "out of range"]),
    ({"space": {}}, ["empty"]),
    ({"searcher": "bayes", "space": {"analog.gain": [2.0]}}, ["bayes", "searcher"]),
    ({"space": {"analog.gain": {"normal": [1, 2]}}}, ["analog.gain", "normal", "distribution"]),
    ({"searcher": "grid", "space": {"analog.gain": {"uniform": [2, 4]}}}, ["analog.gain", "grid"]),
    ({"searcher": "random", "space": {"analog.gain": {"uniform": [2, 4]}}}, ["samples"]),
    ({"metric": "test_accuracy", "scheduler": "asha", "space": {"analog.gain": [2.0]}}, ["test_accuracy", "asha"]),
    ({"stages": "cotrain", "space": {"analog.gain": [2.0]}}, ["cotrain", "xor"]),
    ({"stages": ["train-analogue"], "space": {"analog.gain": [2.0]}}, ["train-analogue", "not a stage"]),
    ({"space": {"analog.g_min": [1.0e-3]}}, ["g_min"]),          # a value that breaks a cross-key rule
    ({"typo": 1, "space": {"analog.gain": [2.0]}}, ["typo"]),
    ({"pareto": {"x": "digital_macs_per_image"}, "space": {"analog.gain": [2.0]}}, ["pareto"]),
])
def test_bad_space_is_one_line_before_ray(tmp_path, capsys, monkeypatch, space, words):
    from pipeline import cli
    monkeypatch.setenv("MIXSIG_HOME", str(tmp_path / "home"))
    cfg, spc = write(tmp_path, space=space)
    assert cli.main(["sweep", str(cfg), "--space", str(spc)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for w in words:
        assert w in err, (w, err)
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()
    assert not (tmp_path / "home" / "mlflow.db").exists()      # no sweep run either


def test_unreachable_cluster_is_one_line(tmp_path, capsys, monkeypatch):
    import socket
    from pipeline import cli
    monkeypatch.setenv("MIXSIG_HOME", str(tmp_path / "home"))
    with socket.socket() as s:      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg, spc = write(tmp_path)
    assert cli.main(["sweep", str(cfg), "--space", str(spc), "--address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"127.0.0.1:{port}" in err and "unreachable" in err, err


def test_space_values_reach_the_schema():
    """Every probe of every dimension is validated: a range's two ends, each listed value."""
    from pipeline.sweep.space import check_space, space_from, trial_config
    space = space_from({"samples": 2, "space": {"training.optimizer.lr": {"loguniform": [1e-3, 1e-1]},
                                                "analog.hidden": [[4], [8]], "analog.gain": [2.0, 4.0]}})
    assert space.searcher == "random" and [d.kind for d in space.dimensions] == ["loguniform", "grid", "grid"]
    assert check_space(space, TINY) == 2 + 2 + 2 + 4    # values one by one, then the 2 × 2 grid points
    cfg = trial_config(TINY, {"analog.hidden": [8], "training.optimizer.lr": 0.02})
    assert cfg.analog.hidden == [8] and cfg.training.optimizer.lr == 0.02
    assert cfg.training.epochs == 3      # the rest is the base config's


def test_pareto_front_and_plot(tmp_path):
    from pipeline.sweep.pareto import front, write
    from pipeline.sweep.space import Pareto
    pts = [(1e3, 0.50), (2e3, 0.60), (2e3, 0.55), (3e3, 0.60), (5e2, 0.40), (4e3, 0.70), (4e3, 0.70)]
    # by hand: (500, .40) < (1000, .50) < (2000, .60) < (4000, .70) (both copies); (2000, .55) and
    # (3000, .60) are dominated by (2000, .60)
    assert front(pts) == [4, 0, 1, 5, 6]
    assert front(pts, x_mode="max", y_mode="max") == [5, 6]
    rows = [{"trial_id": f"t{i}", "a.b": i, "x": px, "y": py} for i, (px, py) in enumerate(pts)]
    table, plot, best = write(rows, ["a.b"], Pareto(x="x", y="y"), tmp_path, "t")
    assert plot.stat().st_size > 1000 and [b["trial_id"] for b in best] == ["t4", "t0", "t1", "t5", "t6"]
    flags = [r["on_front"] for r in csv.DictReader(open(table))]
    assert flags == ["1", "1", "0", "0", "1", "1", "1"]


# --------------------------------------------------------------------------------------- a sweep
@pytest.mark.slow   # 70 s on a quiet 2-core machine (Ray's start-up is 10-20 s of it), 115-190 s on a busy one
def test_sweep_four_trials_two_at_a_time(tmp_path):
    cfg, spc = write(tmp_path)
    proc = ok(mixsig(tmp_path, "sweep", cfg, "--space", spc, "--num-cpus", "2", "-q"))
    db = tmp_path / "home" / "mlflow.db"
    c = client(f"sqlite:///{db}")
    runs, sweeps = sweep_runs(c)
    assert len(sweeps) == 1
    sweep = sweeps[0]
    sid = sweep.info.run_id
    assert sid in proc.stdout and sweep.info.status == "FINISHED"
    assert sweep.data.params["sweep.concurrency"] == "2"
    trials = trials_of(runs, sid)
    assert len(trials) == 4
    points = set()
    for t in trials:   # nested under the sweep, params = the swept values, a train-analog run nested under it
        assert t.data.tags["mlflow.parentRunId"] == sid and t.data.tags["mixsig.status"] == "finished"
        swept = json.loads(t.data.tags["mixsig.sweep_params"])
        assert float(t.data.params["training.optimizer.lr"]) == swept["training.optimizer.lr"]
        assert int(t.data.params["seed"]) == swept["seed"]
        points.add((swept["training.optimizer.lr"], swept["seed"]))
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == t.info.run_id]
        assert [k.data.tags["mixsig.stage"] for k in kids] == ["train-analog"]
        assert kids[0].data.metrics["epochs_total"] == 3
        assert t.data.metrics["val_accuracy"] == kids[0].data.metrics["val_accuracy"]
    assert points == {(lr, s) for lr in (0.01, 0.05) for s in (0, 1)}
    spans = sorted((t.info.start_time, t.info.end_time) for t in trials)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "no two trials ran at the same time"
    # the results table, and the best point recomputed from it (mean over the two seeds)
    folder = tmp_path / "home" / "runs" / sid
    rows = list(csv.DictReader(open(folder / "results.csv")))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"finished"}
    means = {}
    for r in rows:
        means.setdefault(float(r["training.optimizer.lr"]), []).append(float(r["val_accuracy"]))
    best_lr = max(means, key=lambda lr: sum(means[lr]) / 2)
    assert sweep.data.metrics["best_val_accuracy"] == pytest.approx(sum(means[best_lr]) / 2)
    from pipeline.config import load_config
    best = load_config(folder / "best_config.yaml")       # what `mixsig cotrain FILE` reads first
    assert best.training.optimizer.lr == best_lr and best.analog.hidden == [4]
    assert {a.path for a in c.list_artifacts(sid)} >= {"best_config.yaml", "results.csv", "space.yaml", "base.yaml"}
    # the embedded store survived 2 concurrent writers
    assert sqlite3.connect(db).execute("pragma integrity_check").fetchone()[0] == "ok"
    cmp = ok(mixsig(tmp_path, "compare", "--sweep", sid[:8], "--output", "c.png", "--time-output", "t.png"))
    lines = [ln for ln in cmp.stdout.splitlines() if "mixsig_trial" in ln]
    assert len(lines) == 4 and "val_accuracy" in cmp.stdout.splitlines()[0]


# --------------------------------------------------------------------------------------- resume
def _finished_trials(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        return con.execute("select count(*) from tags where key='mixsig.status' and value='finished' and run_uuid in "
                           "(select run_uuid from tags where key='mixsig.trial')").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sweep_killed_midway_resumes_without_rerunning(tmp_path):
    cfg, spc = write(tmp_path, space={**SPACE, "seeds": None,
                                      "space": {"training.optimizer.lr": [0.01, 0.02, 0.03, 0.04]}})
    db = tmp_path / "home" / "mlflow.db"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "sweep", str(cfg), "--space", str(spc),
                                 "--num-cpus", "2", "-q"], cwd=tmp_path, env=env(tmp_path), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while _finished_trials(db) < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)     # the driver and the embedded Ray with it
        proc.wait()
    c = client(f"sqlite:///{db}")
    runs, sweeps = sweep_runs(c)
    sid = sweeps[0].info.run_id
    before = {r.data.tags["mixsig.trial"]: r for r in trials_of(runs, sid)
              if r.data.tags.get("mixsig.status") == "finished"}
    assert 1 <= len(before) < 4
    proc2 = ok(mixsig(tmp_path, "sweep", "--resume", sid[:8], "--num-cpus", "2", "-q"))
    assert "resuming" in proc2.stdout
    runs, _ = sweep_runs(c)
    trials = [r for r in trials_of(runs, sid) if r.info.lifecycle_stage == "active"]
    finished = [r for r in trials if r.data.tags.get("mixsig.status") == "finished"]
    assert len({r.data.tags["mixsig.trial"] for r in finished}) == 4 and len(finished) == 4
    for trial_id, old in before.items():     # not run again: the same run, its stage run untouched
        now = [r for r in finished if r.data.tags["mixsig.trial"] == trial_id]
        assert [r.info.run_id for r in now] == [old.info.run_id]
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == old.info.run_id]
        assert len(kids) == 1 and kids[0].info.end_time <= old.info.end_time
    rows = list(csv.DictReader(open(tmp_path / "home" / "runs" / sid / "results.csv")))
    assert len(rows) == 4 and all(r["status"] in ("finished", "reused") for r in rows)
    assert c.get_run(sid).info.status == "FINISHED"


# --------------------------------------------------------------------------------------- a cluster
_CLUSTER = """
import subprocess, sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
try:
    proc = subprocess.run([sys.executable, "-m", "pipeline", "sweep", sys.argv[1], "--space", sys.argv[2],
                           "--address", cluster.address, "-q"], capture_output=True, text=True, timeout=900)
    print(proc.stdout[-3000:])
    print(proc.stderr[-3000:], file=sys.stderr)
    print("EXIT", proc.returncode)
finally:
    cluster.shutdown()
"""


@pytest.mark.slow
def test_sweep_on_a_simulated_two_node_cluster(tmp_path):
    """ray.cluster_utils.Cluster: two raylets of 1 CPU on this machine, reached by --address;
    the 4 trials run 2 at a time, one per node (each trial run names its node)."""
    cfg, spc = write(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _CLUSTER, str(cfg), str(spc)], cwd=tmp_path, env=env(tmp_path),
                          capture_output=True, text=True, timeout=1200)
    assert "EXIT 0" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 at a time" in proc.stdout and "Ray cluster at" in proc.stdout
    c = client(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    runs, sweeps = sweep_runs(c)
    trials = trials_of(runs, sweeps[0].info.run_id)
    assert len(trials) == 4 and all(t.data.tags["mixsig.status"] == "finished" for t in trials)
    assert len({t.data.tags["mixsig.ray_node"] for t in trials}) == 2
