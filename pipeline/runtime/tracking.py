"""MLflow location and its safe first use.

The tracking store is MLFLOW_TRACKING_URI if set, else the SQLite file `mlflow.db` in the
project folder (see `pipeline.runtime.home`). mlflow is imported lazily so the CLI starts fast.

MLflow creates (or migrates) a SQLite store's schema the first time a process opens it.
Several processes opening a new store at once (a sweep started from a shell loop) race on
that migration and can leave it half-built for good, so `setup_mlflow` opens the store, and
creates the experiment, while holding an exclusive `fcntl.flock` on `<store>.lock` beside the
database file. The lock is held for the schema step only (MLflow then caches the store per
process); SQLite's own locking and MLflow's busy timeout handle the writes of running stages.

Every experiment the project creates (or opens without a kind) is tagged a model-training
experiment (EXPERIMENT_KIND), so that the MLflow UI opens it on its runs and charts.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pipeline.errors import UserError


class TrackingStoreError(UserError):
    """The tracking store cannot be opened (locked, unreadable, not a database)."""


_SET_BY_US: set = set()   # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI


TAG = "mixsig."                 # every tag this project sets on a run starts with it
STATUS_FINISHED = "finished"    # mixsig.status of a run whose work is done


def tag(name: str) -> str:
    """The full MLflow tag name: tag("stage") → "mixsig.stage"."""
    return f"{TAG}{name}"


@contextlib.contextmanager
def recording_status():
    """Around the work of the active MLflow run: its status tag becomes "finished" when the
    work completes, "failed" when anything escapes (which goes on)."""
    import mlflow
    try:
        yield
    except BaseException:
        mlflow.set_tag(tag("status"), "failed")
        raise
    mlflow.set_tag(tag("status"), STATUS_FINISHED)


def user_tracking_uri() -> str | None:
    """MLFLOW_TRACKING_URI as the user set it (None if unset or only exported by mlflow)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri if uri and uri not in _SET_BY_US else None


def tracking_uri() -> str:
    uri = user_tracking_uri()
    if uri:
        return uri
    from pipeline.runtime.home import project_home
    return f"sqlite:///{project_home() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (None for other stores and in-memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


@contextlib.contextmanager
def store_lock(uri: str, timeout: float = 300.0):
    """Exclusive lock on `<database>.lock` for a SQLite store (no-op for other stores)."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    import fcntl
    import time
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(db) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise TrackingStoreError(f"tracking store {db}: cannot create {db}.lock ({exc.strerror or exc})") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingStoreError(f"tracking store {db}: {db}.lock held by another process for "
                                             f"{timeout:.0f} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)    # releases the lock


_OPENED: set = set()


def _probe(db: Path) -> None:
    """Read the database once, waiting at most MIXSIG_SQLITE_TIMEOUT seconds (default 20,
    MLflow's own busy timeout) for another process's write lock."""
    import sqlite3
    if not db.exists():
        return
    timeout = float(os.environ.get("MIXSIG_SQLITE_TIMEOUT", "20"))
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=timeout)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        con.close()


def _open_store(uri: str) -> None:
    """Open (create, migrate) the store once per process, under the store lock."""
    from mlflow.tracking._tracking_service.utils import _get_store
    try:
        db = sqlite_path(uri)
        if db is not None:
            _probe(db)
            if not db.exists():
                _create_atomically(db, home_artifacts=not user_tracking_uri())
        _get_store(uri)
    except Exception as exc:
        raise TrackingStoreError(_store_problem(uri, exc)) from None
    _OPENED.add(uri)


def _create_atomically(db: Path, home_artifacts: bool) -> None:
    """Create and migrate a new SQLite store beside `db` under another name, then rename it
    into place: an interrupt (Ctrl-C, a kill) during MLflow's migrations leaves no
    half-built `mlflow.db` that every later command would fail on. With the project's
    default store, the Default experiment's artifacts go under the project folder (MLflow
    would put them under `./mlruns` of whatever folder the command ran from)."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from pipeline.runtime.home import project_home
    root = (project_home() / "mlruns").as_uri() if home_artifacts else DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    partial = db.with_name(f"{db.name}.creating-{os.getpid()}")
    try:
        store = SqlAlchemyStore(f"sqlite:///{partial}", root)
        store.engine.dispose()
        os.replace(partial, db)
    finally:
        for leftover in (partial, partial.with_name(partial.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _store_problem(uri: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    db = sqlite_path(uri)
    if "locked" in text.lower():
        return (f"tracking store {db or uri} is locked by another process (database is locked); "
                f"wait for it or close it, then retry")
    if db is not None and db.exists() and ("not a database" in text or "malformed" in text):
        return f"tracking store {db} is not a usable SQLite database ({text[:200]})"
    return f"tracking store {db or uri} cannot be opened: {type(exc).__name__}: {text[:300]}"


def setup_mlflow(experiment: str | None = None):
    import logging

    import mlflow
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # it logs each failed query with its traceback, then raises: the CLI reports the raise
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    uri = tracking_uri()
    if not user_tracking_uri():
        _SET_BY_US.add(uri)
    mlflow.set_tracking_uri(uri)
    if uri in _OPENED and not experiment:
        return mlflow
    with store_lock(uri):
        if uri not in _OPENED:
            _open_store(uri)
        if experiment:
            try:
                _set_experiment(mlflow, experiment)
            except Exception as exc:
                raise TrackingStoreError(_store_problem(uri, exc)) from None
    return mlflow


# MLflow 3 tells model-training experiments from GenAI ones (traces, evaluation runs) by this
# tag; where it is missing its UI guesses. Older MLflow versions ignore it. MLflow 3.17's UI
# also has a view switch of its own, which the link of pipeline.cotraining.report.ui_link sets.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
EXPERIMENT_NOTE = ("Runs of `mixsig` (config `{name}`): one run per pipeline stage, and a parent run per "
                   "co-training with the stages nested under it. It is a model-training experiment: in MLflow's "
                   "UI choose **Model training** in the switch at the top left to see its runs and charts.")


def _set_experiment(mlflow, name: str) -> None:
    from pipeline.runtime.home import artifact_location
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        location = artifact_location(name) if not user_tracking_uri() else None
        mlflow.create_experiment(name, artifact_location=location,
                                 tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
                                       "mlflow.note.content": EXPERIMENT_NOTE.format(name=name)})
    elif exp.lifecycle_stage == "deleted":
        raise TrackingStoreError(f"experiment {name!r} was deleted in {tracking_uri()}; restore it "
                                 f"(mlflow experiments restore) or choose another name")
    elif EXPERIMENT_KIND_TAG not in exp.tags:    # made before the kind was set; a kind set in the UI stays
        from mlflow.tracking import MlflowClient
        MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    mlflow.set_experiment(name)
