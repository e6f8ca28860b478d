"""Experiment configs: YAML files validated against one declarative schema (pydantic models).

An unknown key, a wrong type or an out-of-range value is a ConfigError naming the dotted
key, the value and what is allowed. Defaults fill what a file leaves out; `--set
key.path=value` overrides are YAML values applied before validation. The validated
`RootConfig` is what commands and stages receive; `config_dict` is its plain mapping for
the edges that store it, `flatten` its dotted names so every value can be an MLflow param. The schema
exports as JSON Schema (for editors) and as the Markdown reference docs/config.md.
"""
from .errors import ConfigError
from .loading import apply_overrides, config_dict, flatten, load_config, parse_override, validate_config
from .reference import config_json_schema, render_config_reference, write_config_reference
from .schema import BLOCK_DEFAULTS, RootConfig

__all__ = ["ConfigError", "RootConfig", "BLOCK_DEFAULTS", "validate_config", "load_config", "config_dict",
           "apply_overrides", "parse_override", "flatten", "config_json_schema", "render_config_reference",
           "write_config_reference"]
