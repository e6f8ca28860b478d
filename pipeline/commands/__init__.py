"""Command registry: each `mixsig` command is a module here exposing NAME, HELP,
add_arguments(parser) (light imports only, so `--help` stays fast) and run(args) -> int."""

COMMANDS = {
    "cotrain": "cotrain",
    "train-digital": "train_digital",
    "embed": "embed",
    "train-analog": "train_analog",
    "optimize-inputs": "optimize_inputs",
    "retrain-digital": "retrain_digital",
    "evaluate": "evaluate",
    "compare": "compare",
    "verify": "verify",
    "bench": "bench",
    "data": "data",
}
