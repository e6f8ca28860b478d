"""mixsig train-analog: one co-training stage as an MLflow run (see pipeline.stages)."""
from __future__ import annotations

NAME = "train-analog"
HELP = "train the analog block by EP on embeddings (--from-run an embed run) or on a tabular data set"


def add_arguments(parser) -> None:
    from pipeline.stages import add_stage_arguments
    add_stage_arguments(parser, NAME)


def run(args) -> int:
    from pipeline.stages import run_stage_command
    return run_stage_command(NAME, args)
