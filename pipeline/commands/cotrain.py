"""mixsig cotrain: the whole co-training as one parent MLflow run (see pipeline.cotrain)."""
from __future__ import annotations

NAME = "cotrain"
HELP = ("train-digital → (embed → train-analog → optimize-inputs → retrain-digital) × rounds → embed → "
        "train-analog → evaluate, one nested MLflow run per stage and round; --resume continues")


def add_arguments(parser) -> None:
    from pipeline.stages import add_common_arguments
    parser.add_argument("config", nargs="?", help="experiment YAML (experiments/*.yaml)")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted co-training (its parent run id)")
    parser.add_argument("--from-run", action="append", default=[], metavar="RUN_ID",
                        help="start from the encoder of this run (skips train-digital)")
    parser.add_argument("--input", action="append", default=[], metavar="encoder=RUN_ID",
                        help="start from this run's encoder (skips train-digital)")
    parser.add_argument("--run-name", help="name of the parent run (default: the config's name)")
    add_common_arguments(parser)


def run(args) -> int:
    from pathlib import Path

    from pipeline.cotrain import run_cotrain
    from pipeline.stages import PipelineError, _parse_inputs, load_config_with_overrides
    if args.resume and (args.config or args.overrides or args.from_run or args.input):
        raise PipelineError("cotrain --resume RUN_ID takes the config of that run; do not also give a config, "
                            "--set, --from-run or --input")
    if not args.resume and not args.config:
        raise PipelineError("cotrain: give a config file or --resume RUN_ID")
    cfg = None if args.resume else load_config_with_overrides(args.config, args.overrides)
    run_cotrain(cfg, resume=args.resume, workdir=Path(args.workdir), from_runs=args.from_run,
                explicit_inputs=_parse_inputs(args.input), run_name=args.run_name, verbose=0 if args.quiet else 1)
    return 0
