"""The project folder: where a project's tracking store, run folders and caches live.

    MIXSIG_HOME            if set (any folder; created on first use)
    else the nearest of the current folder and its parents that holds a mixsig store
         (`mlflow.db`), so commands started from a subfolder find the project's runs
    else the current folder.

Inside it: `mlflow.db` (the tracking store, unless MLFLOW_TRACKING_URI names another),
`mlruns/` (MLflow artifacts of experiments created here), `runs/` (the stages' local
folders, `--workdir` default) and `runs/_cache/` (downloaded inputs). The current folder
stays the default so existing projects keep their store; MIXSIG_HOME makes every command,
`cotrain --resume` included, independent of the folder it is started from.
"""
from __future__ import annotations

from pipeline.errors import OptionError

import hashlib
import os
import re
from pathlib import Path


def project_home() -> Path:
    env = os.environ.get("MIXSIG_HOME")
    if env:
        home = Path(env).expanduser().resolve()
        if home.exists() and not home.is_dir():
            raise OptionError(f"MIXSIG_HOME={env}: not a folder")
        return home
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "mlflow.db").is_file():
            return folder
    return cwd


def default_workdir() -> Path:
    return project_home() / "runs"


def artifact_location(experiment: str) -> str:
    """Artifact folder (file URI) of a new experiment: `<home>/mlruns/<name>-<hash>`."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment)[:60] or "experiment"
    digest = hashlib.sha1(experiment.encode()).hexdigest()[:8]
    return (project_home() / "mlruns" / f"{slug}-{digest}").as_uri()
