"""Logging the mixed-signal system as an MLflow pyfunc model on the active run (`model`):
models from code (pipeline/serving/model_code.py) with the system's plain files as
artifacts, a signature (images in; class, class name and scores out; chip, time and engine
as params) and an input example; optionally registered in the model registry.

The project's packages travel with the model as its code (`code/`), so a registered model
loads, serves and predicts with the code it was trained with.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
import tempfile
from pathlib import Path

import numpy as np

from pipeline.serving.images import SIDE, to_pixels
from pipeline.serving.system import SYSTEM_FILE

if TYPE_CHECKING:
    from pipeline.config import RootConfig

MODEL_NAME = "model"
MODEL_CODE = Path(__file__).with_name("model_code.py")
PROJECT_PACKAGES = ("analog", "digital", "pipeline")
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scipy", "keras", "tensorflow", "pydantic", "pyyaml", "pillow",
                "tqdm", "PySpice", "scikit-learn", "matplotlib", "threadpoolctl")


def signature(n_classes: int):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, SIDE, SIDE))])
    outputs = Schema([ColSpec("long", "class"), ColSpec("string", "class_name"),
                      *[ColSpec("double", f"score_{k}") for k in range(n_classes)]])
    params = ParamSchema([ParamSpec("chip", "long", -1), ParamSpec("time", "double", 0.0),
                          ParamSpec("engine", "string", "native")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def requirements() -> list[str]:
    """The installed versions of what the model's code imports (pinned, so MLflow need not
    load the model to infer them)."""
    from importlib.metadata import PackageNotFoundError, version
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def project_code() -> list[str]:
    import importlib
    return [str(Path(importlib.import_module(p).__file__).parent) for p in PROJECT_PACKAGES]


def log_system_model(spec: dict, parts: dict, example_images, register: str | None = None) -> str:
    """Log the system (system.json of `spec`, `parts`: {artifact name: local folder}) on the
    active run; returns the model's URI (`runs:/<run id>/model`)."""
    import mlflow
    example = to_pixels(example_images).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / SYSTEM_FILE
        spec_file.write_text(json.dumps(spec, indent=2))
        artifacts = {"system": str(spec_file), **{name: str(path) for name, path in parts.items()}}
        mlflow.pyfunc.log_model(name=MODEL_NAME, python_model=str(MODEL_CODE), artifacts=artifacts,
                                code_paths=project_code(), signature=signature(len(spec["classes"])),
                                input_example=example, pip_requirements=requirements(),
                                registered_model_name=register)
    return f"runs:/{mlflow.active_run().info.run_id}/{MODEL_NAME}"


def register_name(cfg: RootConfig) -> str | None:
    return cfg.mlflow.register_model or None


def log_run_system(cfg: RootConfig, parts: dict, source_run: str, register: str | None = None) -> str | None:
    """Log the system a stage or co-training ends with (`parts`: {"analog"|"encoder"|"chips":
    local folder}) on the active run, with two test images as the input example; None (and
    nothing logged) for a block trained on tabular data."""
    from pipeline.serving.bundle import count_chips, part_folders, system_spec
    from pipeline.flow.inputs import dataset, has_encoder, is_image_data
    if not is_image_data(cfg):
        return None
    parts = {k: v for k, v in parts.items() if v is not None and (k != "encoder" or has_encoder(cfg))}
    spec = system_spec(cfg, source_run, count_chips(parts.get("chips")))
    return log_system_model(spec, part_folders(parts), dataset(cfg).x_test[:2], register)
