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


config_argument = click.argument("config", required=False, metavar="[CONFIG]")
workdir = click.option("--workdir", default="runs", show_default=True, help="local working folder")
overrides = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                         help="override a config value, e.g. --set analog.gain=2.0 (repeatable)")
quiet = click.option("-q", "--quiet", is_flag=True, help="no progress bars")
common = apply(workdir, overrides, quiet)
