"""The co-training stages: each one a module of this package declaring `STAGE = Stage(...)`
(the declaration and the runner are in `pipeline.flow`).

  train_digital, embed, train_analog, program, finetune_chip, optimize_inputs,
  retrain_digital, evaluate

Adding a stage is adding one module here with a `STAGE`: the registry finds it (every
module of this package is imported and its `STAGE` registered), `mixsig <name>` appears
with the common stage options, and `run_stage("<name>", ...)` runs it.
"""
from pipeline.flow.runner import STAGES, discover, get_stage

discover()

__all__ = ["STAGES", "discover", "get_stage"]
