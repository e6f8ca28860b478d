"""mixsig optimize-inputs: one co-training stage as an MLflow run (see pipeline.stages)."""
from __future__ import annotations

NAME = "optimize-inputs"
HELP = "optimise the analog block's input voltages per training sample (inputs: analog, embeddings; output: targets)"


def add_arguments(parser) -> None:
    from pipeline.stages import add_stage_arguments
    add_stage_arguments(parser, NAME)


def run(args) -> int:
    from pipeline.stages import run_stage_command
    return run_stage_command(NAME, args)
