"""The `mixsig` commands that are not stages (each module here exposes a click `command`;
top-level imports stay light so `--help` is fast). Stage commands are not listed here:
the CLI makes one per stage declared in `pipeline.stages` (see pipeline.commands.stage)."""

COMMANDS = {            # command name → module of pipeline.commands
    "cotrain": "cotrain",
    "compare": "compare",
    "verify": "verify",
    "bench": "bench",
    "energy": "energy",
    "config": "config",
    "data": "data",
    "robustness": "robustness",
    "sweep": "sweep",
    "signoff": "signoff",
    "predict": "predict",
    "recalibrate": "recalibrate",
    "cep": "cep",
    "phases": "phases",
    "ternary": "ternary",
}
