"""How big a saved model's circuit would be, read from its description before anything
is built: a file asking for billions of nodes is refused by name instead of failing in a
huge allocation."""
from __future__ import annotations

import os

from .errors import AnalogInputError

__all__ = ["nodes", "check_size"]


def nodes(desc: dict, name: str = "model.json") -> int:
    """Circuit nodes a model description asks for (its layers' widths), without building it."""
    n = 0
    for spec in desc.get("layers") or []:
        cfg = spec.get("config") if isinstance(spec, dict) else None
        for key in ("units", "features", "filters"):
            value = cfg.get(key) if isinstance(cfg, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                continue
            if value < 1 or value > 1e12:
                raise AnalogInputError(f"{name}: layer {cfg.get('name')!r} has {key}={value!r}")
            n += int(value)
    return n


def _memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_size(desc: dict, file, name: str = "model.json") -> None:
    """Refuse a description whose circuit cannot fit in memory before allocating it: the
    native engine holds n × n float64 matrices over its n nodes (about 16 n² bytes)."""
    n = nodes(desc, name)
    need, have = 16 * n * n, _memory()
    if need > have:
        raise AnalogInputError(f"{file}: its layers add up to {n:,} circuit nodes, needing about "
                               f"{need / 2**30:,.0f} GiB (n×n float64 matrices), more than this machine's "
                               f"{have / 2**30:.0f} GiB of memory")
