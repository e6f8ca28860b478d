"""YAML for configs: safe types only, no duplicate keys, bounded nesting and alias expansion.

PyYAML accepts a key given twice (the second silently wins, so a whole section can vanish),
recurses once per nesting level (thousands of levels end in RecursionError) and shares an
aliased node instead of copying it, so a few lines of anchors ("billion laughs") stand for
billions of values that the validator, `deepcopy` and the error messages would then walk.
`load_yaml` refuses all three with a ConfigError naming the place.
"""
from __future__ import annotations

import yaml

from .errors import ConfigError

MAX_DEPTH = 32            # the schema nests 6 levels; more is never a config
MAX_VALUES = 100_000      # values after aliases are expanded; a real config holds a few hundred

__all__ = ["load_yaml", "MAX_DEPTH", "MAX_VALUES"]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:         # an unhashable key: SafeLoader reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first.start_mark.line + 1}, "
                                    f"again on line {key_node.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _check_size(data, where: str) -> None:
    """Walk the loaded tree as its consumers will (aliases expanded) up to the limits."""
    count, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{where}: more than {MAX_VALUES:,} values once YAML aliases are expanded "
                              f"(an alias bomb?); a config holds a few hundred")
        if isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep; a config nests a few")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


def load_yaml(text: str, where: str):
    """The data of a YAML text; ConfigError (naming `where`) for invalid, duplicate-keyed,
    too deeply nested or alias-exploding input."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)   # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply for a config (more than {MAX_DEPTH} levels)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(exc).split())}") from None
    _check_size(data, where)
    return data
