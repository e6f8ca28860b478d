"""MLflow location: MLFLOW_TRACKING_URI if set, else a SQLite file in the working folder
(no server needed). mlflow is imported lazily so the CLI starts fast."""
from __future__ import annotations

import os
from pathlib import Path


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def setup_mlflow(experiment: str | None = None):
    import logging
    import mlflow
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    if experiment:
        mlflow.set_experiment(experiment)
    return mlflow
