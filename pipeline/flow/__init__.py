"""How stages run: the stage declaration and runner, artifacts and lineage, input checks, the
one loop that runs a plan of stages (co-training rounds, sweep trials), plots.

  artifacts       kinds of artifacts stages hand each other, ArtifactRef, npz and model I/O
  lineage         MLflow run lookup, the mixsig.* tags, configs of runs, input resolution
  inputs          required inputs and the checks that run before any work (widths, ranges)
  runner          the Stage declaration, the registry, StageContext and run_stage
  stage_data      what several stage bodies share (the analog block's data and scores)
  loop            the one loop over a plan of stages, with resume
  plots           PNG plots logged with the runs
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.flow.artifacts import (KINDS, ArtifactRef, PipelineError, StageInputError, load_analog,
                                     load_embeddings, load_targets, save_npz)
from pipeline.flow.inputs import check_inputs, dataset, is_image_data
from pipeline.flow.lineage import (STATUS_FINISHED, TAG, config_from_run, dump_config, experiment_name, get_run,
                                   load_config_with_overrides, parse_input_items, resolve_inputs)
from pipeline.flow.runner import Option, Stage, StageContext, StageOutcome, register, run_stage
from pipeline.flow.stage_data import analog_scores

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def required_inputs(spec: Stage, cfg: RootConfig) -> tuple:
    return spec.required_inputs(cfg)


__all__ = ["KINDS", "ArtifactRef", "PipelineError", "StageInputError", "load_analog", "load_embeddings",
           "load_targets", "save_npz", "analog_scores", "check_inputs", "dataset", "is_image_data",
           "STATUS_FINISHED", "TAG", "config_from_run", "dump_config", "experiment_name", "get_run",
           "load_config_with_overrides", "parse_input_items", "resolve_inputs", "Option", "Stage",
           "StageContext", "StageOutcome", "register", "required_inputs", "run_stage"]
