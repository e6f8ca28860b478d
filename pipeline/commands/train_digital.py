"""mixsig train-digital: one co-training stage as an MLflow run (see pipeline.stages)."""
from __future__ import annotations

NAME = "train-digital"
HELP = "train the digital encoder on images (an MLflow run; output: encoder)"


def add_arguments(parser) -> None:
    from pipeline.stages import add_stage_arguments
    add_stage_arguments(parser, NAME)


def run(args) -> int:
    from pipeline.stages import run_stage_command
    return run_stage_command(NAME, args)
