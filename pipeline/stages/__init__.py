"""The co-training stages: each one a module of this package declaring `STAGE = Stage(...)`.

  artifacts   kinds of artifacts stages hand each other, ArtifactRef, npz and model I/O
  lineage     MLflow run lookup, the mixsig.* tags, configs of runs, input resolution
  inputs      required inputs and the checks that run before any work (widths, ranges)
  runner      the Stage declaration, the registry, StageContext and run_stage
  common      helpers several stage bodies share (analog data and scores)
  train_digital, embed, train_analog, optimize_inputs, retrain_digital, evaluate: the stages

Adding a stage is adding one module here with a `STAGE`: the registry finds it (every
module of this package is imported and its `STAGE` registered), `mixsig <name>` appears
with the common stage options, and `run_stage("<name>", ...)` runs it.
"""
from pipeline.stages.artifacts import (KINDS, ArtifactRef, PipelineError, StageInputError, load_analog,
                                       load_embeddings, load_targets, save_npz)
from pipeline.stages.common import analog_scores
from pipeline.stages.inputs import check_inputs, dataset, is_image_data
from pipeline.stages.lineage import (STATUS_FINISHED, TAG, config_from_run, dump_config, experiment_name, get_run,
                                     load_config_with_overrides, parse_input_items, resolve_inputs)
from pipeline.stages.runner import (STAGES, Option, Stage, StageContext, StageOutcome, discover, get_stage, register,
                                    run_stage)

StageSpec = Stage   # the name before stages became modules


def required_inputs(spec: Stage, cfg: dict) -> tuple:
    return spec.required_inputs(cfg)


discover()

__all__ = ["KINDS", "ArtifactRef", "PipelineError", "StageInputError", "load_analog", "load_embeddings",
           "load_targets", "save_npz", "analog_scores", "check_inputs", "dataset", "is_image_data",
           "STATUS_FINISHED", "TAG", "config_from_run", "dump_config", "experiment_name", "get_run",
           "load_config_with_overrides", "parse_input_items", "resolve_inputs", "STAGES", "Option", "Stage",
           "StageContext", "StageOutcome", "StageSpec", "discover", "get_stage", "register", "required_inputs",
           "run_stage"]
