"""Fixtures several test modules share."""
from __future__ import annotations

import os

import pytest

# Each test chooses its own project folder (a tmp path, through the tracking URI or an
# explicit MIXSIG_HOME); one inherited from the shell would send runs elsewhere.
os.environ.pop("MIXSIG_HOME", None)


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """One `mixsig cotrain experiments/smoke.yaml --register smoke-cotrain` (about a minute) for
    every module that needs a finished co-training: (project folder, MLflow client on its
    store, parent run)."""
    from tests.test_pipeline_smoke import SMOKE, client_for, mixsig
    tmp = tmp_path_factory.mktemp("smoke")
    proc = mixsig(tmp, "cotrain", SMOKE, "--register", "smoke-cotrain", "-q")
    client = client_for(tmp)
    exp = client.get_experiment_by_name("smoke")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`mixsig.stage` = 'cotrain'")
    assert len(parents) == 1, proc.stdout
    assert parents[0].info.run_id in proc.stdout          # -q still prints the id --resume needs
    assert f"--backend-store-uri sqlite:///{tmp / 'mlflow.db'}" in proc.stdout   # no placeholder
    # TensorFlow's start-up lines are muted; MLflow's pyfunc model has the predict hints it asks for
    for noise in ("absl::InitializeLog", "cuda", "oneDNN", "Add type hints"):
        assert noise not in proc.stderr, proc.stderr[-2000:]
    return tmp, client, parents[0]
