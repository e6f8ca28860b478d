"""The `mixsig` command line (also `python -m pipeline`)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from pipeline.commands import COMMANDS

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _load(module_name: str):
    try:
        return importlib.import_module(f"pipeline.commands.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"pipeline.commands.{module_name}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixsig", description="Mixed-signal co-training: Keras encoder + analog block trained by "
                                   "Equilibrium Propagation (native engine and ngspice), tracked in MLflow.")
    try:
        from importlib.metadata import version
        ver = version("mixsig")
    except Exception:
        ver = "unknown"
    parser.add_argument("--version", action="version", version=f"mixsig {ver}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = _load(module_name)
        help_text = module.HELP if module else "(not available in this build)"
        p = sub.add_parser(name, help=help_text, description=help_text)
        if module:
            module.add_arguments(p)
        p.set_defaults(_module=module_name)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    # TensorFlow's C++ start-up chatter (oneDNN, "no CUDA drivers") buries the progress bars
    # on this CPU-only tool; TF_CPP_MIN_LOG_LEVEL=0 in the environment brings it back
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    module = _load(args._module)
    if module is None:
        print(f"error: command '{args.command}' is not available yet", file=sys.stderr)
        return 2
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors: one line, no traceback
        if args.debug or not _is_user_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _is_user_error(exc: Exception) -> bool:
    names = {"ConfigError", "DataError", "EncoderContractError", "StageInputError", "PipelineError"}
    return type(exc).__name__ in names or isinstance(exc, (FileNotFoundError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
