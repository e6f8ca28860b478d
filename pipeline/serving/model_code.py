"""The MLflow pyfunc model of the mixed-signal system, as code (MLflow's "models from code").

MLflow stores this file with the model and runs it when the model is loaded; the model's
artifacts are plain files (system.json, encoder/, analog_model/, chips/: see
pipeline.serving.system), read by the project's loaders. Nothing is pickled.

Input: grey images (N, 28, 28), pixel values 0..255 (pipeline.serving.images). Params:
`chip` (-1: the ideal block; K: programmed chip K), `time` (seconds after programming at
which the chip is read), `engine` ("native" or "ngspice"). Output: one row per image with
class, class_name and score_0 … score_9 (the block's output voltages).
"""
from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class MixedSignalModel(PythonModel):
    def load_context(self, context):
        from pipeline.serving.system import MixedSignalSystem, read_spec
        a = context.artifacts
        self.system = MixedSignalSystem.load(read_spec(a["system"]), a["analog_model"], a.get("encoder"),
                                             a.get("chips"))

    # np.ndarray is a hint MLflow accepts without inferring a schema from it (the explicit
    # tensor signature stays the schema); without a hint MLflow warns at every class definition.
    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from pipeline.serving.system import request_of_params
        chip, t, engine = request_of_params(params)
        images = model_input.to_numpy() if hasattr(model_input, "to_numpy") else model_input
        return self.system.classify(images, chip=chip, t=t, engine=engine)


mlflow.models.set_model(MixedSignalModel())
