"""The `mixsig` command line (also `python -m pipeline`), on Click.

Commands: one per stage declared in `pipeline.stages` (generated from its declaration) and
those of `pipeline.commands.COMMANDS`. A user error (an instance of one of
`pipeline.errors.user_error_types()`: bad config, missing input, unknown run, bad option)
prints one line `error: ...` and exits 2; a machine's refusal (disk full, read-only)
prints one line and exits 1; anything else is a bug: its traceback, a line saying so, exit
1. `--debug` raises every error with its traceback; Ctrl-C exits 130 and SIGTERM 143, their
runs marked KILLED (pipeline.runtime.interrupts).
Heavy libraries are imported by command bodies only, so
`--help` stays fast.
"""
from __future__ import annotations

import importlib
import os
import sys

import click

# TensorFlow's C++ start-up chatter (oneDNN, "no CUDA drivers") buries the progress bars on
# this CPU-only tool: main() mutes it unless --debug (pipeline.runtime.quiet_start)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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
    from pipeline.errors import user_error_types
    return isinstance(exc, user_error_types())


def _report(exc: Exception) -> int:
    """One line for a user error (exit 2) or the machine's refusal (exit 1); a bug's
    traceback and a line saying it is one (exit 1)."""
    import traceback

    from pipeline.errors import environment_problem
    if is_user_error(exc):
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    problem = environment_problem(exc)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    traceback.print_exception(exc)
    print(f"error: internal error ({type(exc).__name__}): a bug in mixsig, not in your input; "
          f"please report it with the traceback above", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    state = {"debug": "--debug" in args}
    if not args:
        click.echo(cli.get_help(click.Context(cli, info_name="mixsig", help_option_names=["-h", "--help"])))
        return 2
    from pipeline.runtime import allocator, interrupts, quiet_start
    allocator.tune()           # no page faults on the native engine's large temporaries
    quiet_start.setup(debug=state["debug"])   # TensorFlow's start-up lines muted; the current folder importable
    interrupts.install()       # SIGTERM raises interrupts.Terminated, like Ctrl-C raises KeyboardInterrupt
    try:
        rv = cli.main(args=args, prog_name="mixsig", standalone_mode=False, obj=state)
        interrupts.raise_pending()      # an interrupt a finalizer swallowed is still one
    except click.exceptions.Abort:   # Click's form of KeyboardInterrupt
        interrupts.handled()
        print(interrupts.describe(KeyboardInterrupt()), file=sys.stderr)
        return 130
    except (KeyboardInterrupt, interrupts.Terminated) as exc:
        interrupts.handled()
        print(interrupts.describe(exc), file=sys.stderr)
        return interrupts.exit_code(exc)
    except click.UsageError as exc:
        if state["debug"]:
            raise
        where = exc.ctx.command_path if exc.ctx is not None else "mixsig"
        print(f"error: {where}: {exc.format_message().rstrip('.')} (see {where} --help)", file=sys.stderr)
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Exception as exc:
        if state["debug"]:
            raise
        return _report(exc)
    return int(rv or 0)


if __name__ == "__main__":
    raise SystemExit(main())
