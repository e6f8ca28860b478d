"""The tracking store under concurrency: several processes opening a new SQLite store at
the same moment (a sweep started from a shell loop) all succeed and leave a healthy store;
a store locked by another process gives a one-line error, not a traceback."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N_PROCESSES = 8
REPEATS = int(os.environ.get("MIXSIG_STORE_RACE_REPEATS", "3"))   # 10 for the recorded figures

# each worker imports everything first, then waits for the go file so that all of them open
# the new store within a few milliseconds of each other
WORKER = """
import os, sys, time
from pathlib import Path
import mlflow
from pipeline.runtime.tracking import setup_mlflow
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.002)
setup_mlflow("race")
with mlflow.start_run(run_name=f"w{sys.argv[2]}"):
    mlflow.log_metric("x", float(sys.argv[2]))
"""


def _env(db: Path) -> dict:
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{db}", PYTHONPATH=str(ROOT))


def _healthy(db: Path) -> int:
    """Runs in the store's 'race' experiment, after checking the schema is MLflow's
    current one (independently of pipeline.runtime.tracking: alembic head vs the stored version)."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not any(t.startswith("_alembic_tmp") for t in tables), tables
        (version,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
        n = con.execute("SELECT count(*) FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
                        "WHERE e.name = 'race' AND r.status = 'FINISHED'").fetchone()[0]
    finally:
        con.close()
    head = ScriptDirectory.from_config(_get_alembic_config(f"sqlite:///{db}")).get_current_head()
    assert version == head
    return n


@pytest.mark.slow
def test_processes_started_together_on_a_new_store_all_succeed(tmp_path):
    timings = []
    for rep in range(REPEATS):
        folder = tmp_path / f"rep{rep}"
        folder.mkdir()
        db, go = folder / "mlflow.db", folder / "go"
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(go), str(i)], cwd=folder, env=_env(db),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(N_PROCESSES)]
        time.sleep(8 if rep == 0 else 4)    # let them all import mlflow and wait at the go file
        t0 = time.perf_counter()
        go.touch()
        outs = [p.communicate(timeout=300) for p in procs]
        timings.append(time.perf_counter() - t0)
        failed = [(i, p.returncode, err[-800:]) for i, (p, (_, err)) in enumerate(zip(procs, outs)) if p.returncode]
        assert not failed, f"repeat {rep}: {failed}"
        assert _healthy(db) == N_PROCESSES
    print(f"\n{REPEATS} x {N_PROCESSES} processes on a new store: all succeeded; seconds from go to all done: "
          f"min {min(timings):.1f}, median {sorted(timings)[len(timings) // 2]:.1f}, max {max(timings):.1f}")


def test_store_lock_serialises_and_releases(tmp_path):
    from pipeline.runtime.tracking import TrackingStoreError, store_lock
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with store_lock(uri):
        assert (tmp_path / "mlflow.db.lock").exists()
        with pytest.raises(TrackingStoreError, match="mlflow.db.lock held by another process"):
            with store_lock(uri, timeout=0.2):
                pass
    with store_lock(uri, timeout=0.2):    # released
        pass
    with store_lock("http://example.invalid:5000"):   # other stores: nothing to lock
        pass


def test_a_locked_database_at_start_is_a_one_line_error(tmp_path):
    db = tmp_path / "mlflow.db"
    subprocess.run([sys.executable, "-c", "from pipeline.runtime.tracking import setup_mlflow; setup_mlflow('x')"],
                   cwd=tmp_path, env=_env(db), check=True, capture_output=True)
    holder = sqlite3.connect(db, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")      # another process holds the database
    try:
        cfg = ROOT / "experiments" / "xor.yaml"
        env = dict(_env(db), MIXSIG_SQLITE_TIMEOUT="1")
        out = subprocess.run([sys.executable, "-m", "pipeline", "train-analog", str(cfg), "-q"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=300)
    finally:
        holder.rollback()
        holder.close()
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "locked" in out.stderr and str(db) in out.stderr


def test_a_store_locked_in_the_middle_of_a_run_is_a_one_line_error(tmp_path):
    """Another process takes an exclusive lock on the store while a stage is logging: one
    line naming the lock, exit 1, no traceback."""
    db = tmp_path / "mlflow.db"
    cfg = ROOT / "experiments" / "iris.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "train-analog", str(cfg), "--set", "training.epochs=400"],
                            cwd=tmp_path, env=_env(db), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = None
    try:
        for line in proc.stdout:
            if "run " in line and "→" in line:
                holder = sqlite3.connect(db, timeout=30)
                holder.execute("BEGIN EXCLUSIVE")     # held until the stage gives up
                break
        err = proc.communicate(timeout=300)[1]
    finally:
        if holder is not None:
            holder.rollback()
            holder.close()
        if proc.poll() is None:
            proc.kill()
    assert holder is not None
    assert proc.returncode == 1, (proc.returncode, err[-3000:])
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("error: ") and "locked" in lines[-1], err[-3000:]
