"""Options several commands share (click decorators), and their parsing."""
from __future__ import annotations

import click


def apply(*decorators):
    """Apply option decorators so that they appear in --help in the order given."""
    def deco(f):
        for d in reversed(decorators):
            f = d(f)
        return f
    return deco


class RoundNumber(click.ParamType):
    name = "ROUND"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(value)
            except ValueError:
                self.fail(f"{value!r} is not an integer", param, ctx)
        if number < 0:
            self.fail(f"{number} is negative; rounds count from 0", param, ctx)
        return number


class WorkFolder(click.ParamType):
    """A folder the command may create and write: not an existing file, under a folder."""
    name = "FOLDER"

    def convert(self, value, param, ctx):
        import os
        from pathlib import Path
        path = Path(value).expanduser().resolve()
        if path.exists() and not path.is_dir():
            self.fail(f"{value} is a file, not a folder", param, ctx)
        parent = next((p for p in (path, *path.parents) if p.exists()), None)
        if parent is None or not parent.is_dir():
            self.fail(f"{value}: {parent} is not a folder", param, ctx)
        if not os.access(parent, os.W_OK | os.X_OK):
            self.fail(f"{value}: {parent} is not writable", param, ctx)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.fail(f"{value}: cannot be created ({exc.strerror or exc})", param, ctx)
        return path


def workdir_or_default(workdir):
    """The --workdir given, else `runs/` in the project folder (pipeline.runtime.home)."""
    from pipeline.runtime.home import default_workdir
    return workdir if workdir is not None else default_workdir()


config_argument = click.argument("config", required=False, metavar="[CONFIG]")
workdir = click.option("--workdir", type=WorkFolder(), default=None,
                       help="local working folder [default: runs/ in the project folder, $MIXSIG_HOME or the "
                            "current one]")
overrides = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                         help="override a config value, e.g. --set analog.gain=2.0 (repeatable)")


def _quiet_mlflow(ctx, param, value):
    """-q silences MLflow's artifact download/upload bars too (they are MLflow's, not ours)."""
    if value:
        from pipeline.runtime.quiet_start import mute_mlflow_bars
        mute_mlflow_bars()
    return value


# every command with -q takes this one, so that -q also mutes MLflow's bars everywhere
quiet = click.option("-q", "--quiet", is_flag=True, callback=_quiet_mlflow, help="no progress bars")
common = apply(workdir, overrides, quiet)


def engine(help: str):
    """--engine native|ngspice, native by default; `help` says what ngspice changes."""
    return click.option("--engine", type=click.Choice(["native", "ngspice"]), default="native", show_default=True,
                        help=help)
