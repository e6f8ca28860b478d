"""The artifact store: what stages hand each other, where it lives, how it is read.

Kinds (the folder a stage run logs as an MLflow artifact, and reads back):

  encoder     `encoder/`       the digital encoder (`Encoder.save` / `digital.load_encoder`)
  embeddings  `embeddings/`    embeddings.npz: x_/y_ train, val, test (volts), v_low, v_high, n_classes
  analog      `analog_model/`  the analog block (`AnalogModel.save`)
  targets     `targets/`       targets.npz: target embeddings of the training set

An `ArtifactRef` names one artifact by the run that holds it and/or a local folder; its
`path()` downloads it from MLflow when the folder is not on disk.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError, StageInputError  # noqa: F401  (raised here; stages import them from here)


KINDS = {
    "encoder": ("encoder", "the digital encoder (train-digital or retrain-digital)"),
    "embeddings": ("embeddings", "the embeddings .npz (embed, or retrain-digital: the retrained encoder's)"),
    "analog": ("analog_model", "the analog model folder (train-analog)"),
    "targets": ("targets", "the target embeddings .npz (optimize-inputs)"),
}


def artifact_dir(kind: str) -> str:
    """The artifact folder of a kind (`analog` → `analog_model`)."""
    return KINDS[kind][0]


@dataclass
class ArtifactRef:
    """One artifact: where it lives in MLflow (run_id) and/or on disk (local)."""
    kind: str
    run_id: str | None = None
    local: Path | None = None

    @property
    def artifact_path(self) -> str:
        return artifact_dir(self.kind)

    def describe(self) -> str:
        return f"run {self.run_id}" if self.run_id else f"folder {self.local}"

    def path(self, cache: Path | None = None) -> Path:
        """The local folder, downloaded from the run's artifacts if it is not on disk."""
        if self.local is not None and self.local.exists():
            return self.local
        if self.run_id is None:
            raise StageInputError(f"{self.kind} input folder {self.local} does not exist")
        import mlflow
        dst = self.local.parent if self.local is not None else Path(cache or "runs/_cache") / self.run_id
        dst.mkdir(parents=True, exist_ok=True)
        try:
            got = mlflow.artifacts.download_artifacts(run_id=self.run_id, artifact_path=self.artifact_path,
                                                      dst_path=str(dst))
        except Exception as exc:
            raise StageInputError(f"run {self.run_id} has no '{self.artifact_path}' artifact for input "
                                  f"'{self.kind}' ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        self.local = Path(got)
        return self.local


def save_npz(folder: Path, name: str, **arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.savez(path, **arrays)
    return path


def _npz(kind: str, folder: Path) -> Path:
    file = Path(folder) / f"{kind}.npz"
    if not file.is_file():
        raise StageInputError(f"{kind} input {folder} has no {file.name}")
    return file


def read_npz(kind: str, folder: Path) -> dict:
    """Every array of a stage's .npz, read whole (no pickle): a truncated or damaged file
    (an interrupted copy, a full disk) is a StageInputError naming it, not a zipfile trace."""
    import zipfile
    import zlib
    file = _npz(kind, folder)
    try:
        with np.load(file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise StageInputError(f"{kind} input {file}: damaged or truncated ({' '.join(str(exc).split())[:160]}); "
                              f"rerun the stage that wrote it") from None


def load_embeddings(folder: Path) -> dict:
    """The embeddings .npz; voltages (x_*) as float64 (stored as float32)."""
    return {k: (v.astype(np.float64) if k.startswith("x_") else v) for k, v in read_npz("embeddings", folder).items()}


def load_targets(folder: Path) -> dict:
    return read_npz("targets", folder)


def load_analog(folder: Path):
    """The saved analog block of a folder (StageInputError if it holds none)."""
    from analog.model import AnalogModel
    try:
        return AnalogModel.load(folder)
    except FileNotFoundError:
        raise StageInputError(f"analog input {folder} holds no saved analog model") from None
    except ValueError as exc:   # an old pickle-only folder, a damaged or foreign model.json
        raise StageInputError(f"analog input {folder}: {exc}") from None


def input_width(kind: str, folder: Path) -> int | None:
    """Embedding width an artifact carries or expects (cheap: no Keras, no solves)."""
    if kind == "encoder":
        from digital.base import read_manifest
        try:
            return int(read_manifest(folder)["params"]["embedding_dim"])
        except Exception as exc:
            raise StageInputError(f"encoder input {folder} is not a saved encoder ({exc})") from None
    if kind in ("embeddings", "targets"):
        arrays = read_npz(kind, folder)
        key = "x_train" if kind == "embeddings" else "targets"
        if key not in arrays or arrays[key].ndim != 2:
            raise StageInputError(f"{kind} input {folder}: no 2-d '{key}' array")
        return int(arrays[key].shape[1])
    if kind == "analog":
        return int(load_analog(folder).circuit.n_features)
    return None
