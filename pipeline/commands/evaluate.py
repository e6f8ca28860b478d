"""mixsig evaluate: one co-training stage as an MLflow run (see pipeline.stages)."""
from __future__ import annotations

NAME = "evaluate"
HELP = "test accuracies: digital-only, analog on embeddings, end to end, and a Keras backprop baseline"


def add_arguments(parser) -> None:
    from pipeline.stages import add_stage_arguments
    add_stage_arguments(parser, NAME)


def run(args) -> int:
    from pipeline.stages import run_stage_command
    return run_stage_command(NAME, args)
