"""Damaged stage files (a truncated or garbled .npz left by an interrupted copy or a full
disk): the embeddings and targets a resumed co-training reads, and a programmed chip's
arrays, are refused with one line naming the file, never a zipfile traceback."""
import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from analog.errors import AnalogInputError
from analog.hardware import Chip, program, resolve_hardware
from pipeline import cli
from pipeline.errors import UserError
from pipeline.flow.artifacts import StageInputError, input_width, load_embeddings, load_targets
from tests.analog_circuits import block

ROOT = Path(__file__).resolve().parents[1]


def _damage(file: Path, how: str) -> None:
    data = bytearray(file.read_bytes())
    if how == "truncate":
        file.write_bytes(bytes(data[: len(data) // 2]))
    else:                                        # zeros over the zip's central directory
        data[-40:] = bytes(40)
        file.write_bytes(bytes(data))


def _embeddings(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(folder / "embeddings.npz", x_train=rng.uniform(-1, 1, (40, 6)).astype(np.float32),
             y_train=rng.integers(0, 3, 40))
    np.savez(folder / "targets.npz", targets=rng.uniform(-1, 1, (40, 6)))
    return folder


def test_intact_files_read_back_exactly(tmp_path):
    folder = _embeddings(tmp_path / "e")
    with np.load(folder / "embeddings.npz") as z:
        want = z["x_train"].astype(np.float64)
    np.testing.assert_array_equal(load_embeddings(folder)["x_train"], want)
    assert load_targets(folder)["targets"].shape == (40, 6)
    assert input_width("embeddings", folder) == 6


@pytest.mark.parametrize("how", ["truncate", "garble"])
@pytest.mark.parametrize("kind", ["embeddings", "targets"])
def test_damaged_embeddings_and_targets_name_the_file(tmp_path, kind, how):
    folder = _embeddings(tmp_path / "e")
    _damage(folder / f"{kind}.npz", how)
    with pytest.raises(StageInputError, match=rf"{kind} input .*{kind}\.npz: damaged or truncated"):
        (load_embeddings if kind == "embeddings" else load_targets)(folder)
    with pytest.raises(StageInputError, match="damaged or truncated"):
        input_width(kind, folder)
    assert issubclass(StageInputError, UserError)


@pytest.mark.parametrize("how", ["truncate", "garble"])
def test_damaged_chip_arrays_name_the_file(tmp_path, how):
    m = block(hidden=(4,))
    program(m, resolve_hardware("rram"), seed=2).save(tmp_path / "c")
    _damage(tmp_path / "c" / "chip.npz", how)
    with pytest.raises(AnalogInputError, match=r"chip\.npz: damaged or truncated"):
        Chip.load(tmp_path / "c", m)


def test_cli_train_analog_on_truncated_embeddings_is_one_line_exit_2(tmp_path, monkeypatch):
    folder = _embeddings(tmp_path / "e")
    _damage(folder / "embeddings.npz", "truncate")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MIXSIG_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["train-analog", str(ROOT / "experiments" / "smoke.yaml"), "--input",
                       f"embeddings={folder}", "-q"])
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    assert rc == 2, err.getvalue()
    assert len(lines) == 1 and "embeddings.npz" in lines[0] and "damaged or truncated" in lines[0]
    assert "Traceback" not in err.getvalue()
