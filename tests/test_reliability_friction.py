"""Friction removed: a plug-in encoder in the current folder imports under the installed
`mixsig` script; TensorFlow's start-up lines are gone from a normal run and back with
--debug; an encoder that breaks its contract after fit is named right there."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digital import PCAEncoder

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"
FASHION = Path(os.environ.get("MIXSIG_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
MIXSIG = Path(sys.executable).parent / "mixsig"
TF_NOISE = ("absl::InitializeLog", "cuda", "oneDNN", "cuInit")

needs_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                   reason="Fashion-MNIST not available")


class _WrongWidthAfterFit(PCAEncoder):
    """Honours the contract on the pre-flight sample (300 images), then, once fitted on
    more images, embeds one volt too few."""

    def fit(self, images, labels, *args, **kw):
        self.big_fit_ = len(images) > 300
        return super().fit(images, labels, *args, **kw)

    def embed(self, images):
        out = super().embed(images)
        return out[:, :-1] if getattr(self, "big_fit_", False) else out


def wrong_width_after_fit(embedding_dim: int = 24, v_low: float = -1.0, v_high: float = 1.0, seed: int = 0):
    return _WrongWidthAfterFit(embedding_dim=embedding_dim, v_low=v_low, v_high=v_high, seed=seed)


def _config(tmp: Path, encoder: str) -> Path:
    path = tmp / "cfg.yaml"
    path.write_text(SMOKE.read_text().replace("encoder: mlp", f'encoder: "{encoder}"')
                    .replace("params: {hidden: [64], dropout: 0.0}", "params: {}"))
    return path


@needs_fashion
def test_encoder_contract_checked_right_after_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    from pipeline import cli
    spec = "tests.test_reliability_friction:wrong_width_after_fit"
    assert cli.main(["train-digital", str(_config(tmp_path, spec)), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for words in (f"digital.encoder='{spec}'", "_WrongWidthAfterFit", "after fit", "23", "24"):
        assert words in err, (words, err)
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["mixsig.status"] == "failed"


@needs_fashion
@pytest.mark.skipif(not MIXSIG.is_file(), reason="the mixsig script is not installed")
def test_plugin_from_the_current_folder_and_no_tensorflow_noise(tmp_path):
    (tmp_path / "my_encoders.py").write_text(
        "from digital import PCAEncoder\n\n"
        "def small_pca(embedding_dim=24, v_low=-1.0, v_high=1.0, seed=0):\n"
        "    return PCAEncoder(embedding_dim=embedding_dim, v_low=v_low, v_high=v_high, seed=seed)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = subprocess.run([str(MIXSIG), "train-digital", str(_config(tmp_path, "my_encoders:small_pca")), "-q"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "train-digital run" in out.stdout
    # the MLP (Keras, so TensorFlow) in a normal run: no start-up lines; --debug keeps them
    out = subprocess.run([str(MIXSIG), "train-digital", str(SMOKE), "-q"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert not any(n in out.stderr for n in TF_NOISE), out.stderr
    if shutil.which("nvidia-smi") is None:    # a CPU-only machine: TensorFlow does complain there
        out = subprocess.run([str(MIXSIG), "--debug", "train-digital", str(SMOKE), "-q"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and any(n in out.stderr for n in TF_NOISE), out.stderr[-2000:]


def test_quiet_setup_appends_the_current_folder_and_sets_the_level(tmp_path, monkeypatch):
    from pipeline.runtime import quiet_start as quiet
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setattr(quiet, "_USER_TF_LEVEL", None)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet.setup(debug=False)
    assert sys.path[-1] == str(tmp_path) and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    quiet.setup(debug=True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    quiet.remove_finder()
