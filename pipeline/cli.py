"""The `mixsig` command line (also `python -m pipeline`), on Click.

Commands: one per stage declared in `pipeline.stages` (generated from its declaration) and
those of `pipeline.commands.COMMANDS`. A user error (bad config, missing input, unknown
run, bad option) prints one line `error: ...` and exits 2; `--debug` shows the traceback
instead; Ctrl-C exits 130 and SIGTERM 143, their runs marked KILLED (pipeline.signals).
Heavy libraries are imported by command bodies only, so
`--help` stays fast.
"""
from __future__ import annotations

import importlib
import os
import sys

import click

# TensorFlow's C++ start-up chatter (oneDNN, "no CUDA drivers") buries the progress bars on
# this CPU-only tool: main() mutes it unless --debug (pipeline.quiet)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

USER_ERRORS = {"ConfigError", "DataError", "EncoderContractError", "StageInputError", "PipelineError",
               "TrackingStoreError", "LivenessError", "SignoffError"}


class MixsigGroup(click.Group):
    """Stage commands from the stage registry, the other commands from pipeline.commands."""

    def _stages(self) -> dict:
        from pipeline.stages import STAGES
        return STAGES

    def list_commands(self, ctx) -> list[str]:
        from pipeline.commands import COMMANDS
        return sorted(set(self._stages()) | set(COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        stages = self._stages()
        if name in stages:
            from pipeline.commands.stage import stage_command
            return stage_command(stages[name])
        from pipeline.commands import COMMANDS
        if name in COMMANDS:
            return importlib.import_module(f"pipeline.commands.{COMMANDS[name]}").command
        return None

    def format_commands(self, ctx, formatter) -> None:
        stages = self._stages()
        sections = {"Stages (one MLflow run each)": [], "Commands": []}
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                key = "Stages (one MLflow run each)" if name in stages else "Commands"
                sections[key].append((name, cmd.get_short_help_str(limit=formatter.width - 6 - len(name))))
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("mixsig")
    except Exception:
        return "unknown"


@click.group("mixsig", cls=MixsigGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), prog_name="mixsig", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="show full tracebacks on errors")
@click.pass_context
def cli(ctx, debug):
    """Mixed-signal co-training: Keras encoder + analog block trained by Equilibrium
    Propagation (native engine and ngspice), tracked in MLflow."""
    ctx.obj["debug"] = debug


def is_user_error(exc: BaseException) -> bool:
    return type(exc).__name__ in USER_ERRORS or isinstance(exc, (FileNotFoundError, ValueError))


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    state = {"debug": "--debug" in args}
    if not args:
        click.echo(cli.get_help(click.Context(cli, info_name="mixsig", help_option_names=["-h", "--help"])))
        return 2
    from pipeline import quiet, signals
    quiet.setup(debug=state["debug"])   # TensorFlow's start-up lines muted; the current folder importable
    signals.install()       # SIGTERM raises signals.Terminated, like Ctrl-C raises KeyboardInterrupt
    try:
        rv = cli.main(args=args, prog_name="mixsig", standalone_mode=False, obj=state)
    except click.exceptions.Abort:   # Click's form of KeyboardInterrupt
        print(signals.describe(KeyboardInterrupt()), file=sys.stderr)
        return 130
    except (KeyboardInterrupt, signals.Terminated) as exc:
        print(signals.describe(exc), file=sys.stderr)
        return signals.exit_code(exc)
    except click.UsageError as exc:
        if state["debug"]:
            raise
        where = exc.ctx.command_path if exc.ctx is not None else "mixsig"
        print(f"error: {where}: {exc.format_message().rstrip('.')} (see {where} --help)", file=sys.stderr)
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Exception as exc:  # user-facing errors: one line, no traceback
        if state["debug"] or not is_user_error(exc):
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return int(rv or 0)


if __name__ == "__main__":
    raise SystemExit(main())
