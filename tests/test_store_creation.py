"""A new SQLite tracking store is built under another name and renamed into place, so an
interrupt during MLflow's table creation and migrations leaves no half-built `mlflow.db`
(which every later command, and MLflow itself, would then fail on: "table ... already
exists")."""
from __future__ import annotations

import sqlite3

import pytest

from pipeline.runtime import tracking


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXSIG_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tracking, "_OPENED", set())
    return tmp_path / "mlflow.db"


@pytest.mark.parametrize("user_uri", [False, True])
def test_an_interrupt_during_creation_leaves_no_store(fresh, monkeypatch, user_uri):
    from mlflow.store.tracking import sqlalchemy_store
    if user_uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fresh}")
    real_init = sqlalchemy_store.SqlAlchemyStore.__init__

    def interrupted(self, db_uri, root):       # some tables made, then Ctrl-C
        path = db_uri[len("sqlite:///"):]
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE experiments (id INTEGER)")
        con.commit()
        con.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(sqlalchemy_store.SqlAlchemyStore, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tracking.setup_mlflow()
    assert not fresh.exists()
    assert [p.name for p in fresh.parent.iterdir() if "creating" in p.name] == []

    monkeypatch.setattr(sqlalchemy_store.SqlAlchemyStore, "__init__", real_init)
    tracking.setup_mlflow("after-interrupt")              # the next command builds it whole
    con = sqlite3.connect(f"file:{fresh}?mode=ro", uri=True)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"experiments", "runs", "alembic_version"} <= names
        exps = {r[0]: r[1] for r in con.execute("SELECT name, artifact_location FROM experiments")}
    finally:
        con.close()
    assert "after-interrupt" in exps and "Default" in exps
    if not user_uri:      # the project's default store: Default's artifacts under the project folder
        assert exps["Default"] == (fresh.parent / "mlruns" / "0").as_uri()
