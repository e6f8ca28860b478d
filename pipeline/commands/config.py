"""mixsig config: show a validated config, export the config's JSON Schema."""
from __future__ import annotations

import click

from pipeline.commands import options as opt


@click.group("config", short_help="show a validated config with defaults, or export the config's JSON Schema")
def command():
    """Experiment configs: `show` one validated, with every default filled in; `schema` the
    JSON Schema of all configs (for editors' completion and checking)."""


def show_config(config: str, overrides=(), as_yaml: bool = False) -> int:
    from pipeline.config import config_dict
    from pipeline.flow.lineage import load_config_with_overrides
    cfg = load_config_with_overrides(config, overrides)
    if as_yaml:
        import yaml
        click.echo(yaml.safe_dump(config_dict(cfg), sort_keys=False), nl=False)
        return 0
    flat = dict(_leaves(config_dict(cfg)))
    width = max(map(len, flat))
    for key, value in flat.items():
        click.echo(f"{key:<{width}} = {_as_set_value(value)}")
    return 0


def _leaves(node: dict, head: str = ""):
    """Dotted key -> value, lists kept whole (unlike pipeline.config.flatten, which joins them
    for MLflow params)."""
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{head}{key}.")
        else:
            yield f"{head}{key}", value


def _as_set_value(value) -> str:
    """A value written as `--set KEY=VALUE` reads it back (YAML flow style: [20, 10], null,
    true), so a line of `config show` can be pasted into --set."""
    import yaml
    if isinstance(value, str):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


@command.command("show", short_help="print a config validated, with defaults, one `key = value` per line")
@click.argument("config")
@opt.overrides
@click.option("--yaml", "as_yaml", is_flag=True, help="print the full config as YAML instead (a complete config file)")
def show(config, overrides, as_yaml) -> int:
    """Validate CONFIG (with any --set overrides) and print every key, defaults filled in."""
    return show_config(config, overrides, as_yaml)


@command.command("schema", short_help="print the JSON Schema of experiment configs")
@click.option("-o", "--output", metavar="FILE", help="write it to FILE instead of printing it")
def schema(output) -> int:
    """The JSON Schema of experiment configs, e.g. for YAML editors: in VS Code's YAML
    extension, map experiments/*.yaml to the written file in `yaml.schemas`."""
    import json

    from pipeline.config import config_json_schema
    text = json.dumps(config_json_schema(), indent=2) + "\n"
    if output:
        from pathlib import Path
        Path(output).write_text(text)
        click.echo(f"JSON Schema written to {output}")
    else:
        click.echo(text, nl=False)
    return 0
