"""Numbers as SPICE netlists take them, at full precision."""
from __future__ import annotations

import numpy as np


def spice_number(value: float) -> str:
    """Full-precision SPICE number (repr round-trips a double; no negative zero)."""
    value = float(value) + 0.0
    if not np.isfinite(value):
        raise ValueError(f"non-finite value {value!r} in a netlist")
    return repr(value)
