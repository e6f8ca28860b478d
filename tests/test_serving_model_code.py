"""The MLflow model's code (pipeline/serving/model_code.py) as MLflow sees it when it runs the
file: `predict` carries a type hint MLflow accepts, so defining the model warns nothing (each
log or load runs the file again, and an unhinted `predict` warned each time), and the hint is
one MLflow infers no schema from, so the logged tensor signature stays the model's schema."""
from __future__ import annotations

import runpy
import warnings

import numpy as np

from pipeline.serving.mlflow_model import MODEL_CODE


def test_model_code_defines_a_hinted_predict_without_warnings():
    from mlflow.types.type_hints import _signature_cannot_be_inferred_from_type_hint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = runpy.run_path(str(MODEL_CODE))
    assert [str(w.message) for w in caught if "type hint" in str(w.message).lower()] == []
    hints = names["MixedSignalModel"]().predict_type_hints
    assert hints.input is np.ndarray
    assert _signature_cannot_be_inferred_from_type_hint(hints.input)
