"""mixsig embed: one co-training stage as an MLflow run (see pipeline.stages)."""
from __future__ import annotations

NAME = "embed"
HELP = "embed train/val/test images with an encoder (input: encoder; output: embeddings)"


def add_arguments(parser) -> None:
    from pipeline.stages import add_stage_arguments
    add_stage_arguments(parser, NAME)


def run(args) -> int:
    from pipeline.stages import run_stage_command
    return run_stage_command(NAME, args)
