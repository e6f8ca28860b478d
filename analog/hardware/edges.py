"""The chip's wires in circuit units (the converters are in converters.py).

A chip is simulated in trained units: every device conductance divided by its layer's k
(programming.py). The wires are metal, programmed by nobody, so a segment of r_segment Ω
has conductance 1/r_segment in device units and 1/(k·r_segment) in the circuit's.
"""
from __future__ import annotations

import numpy as np

from .spec import HardwareSpec


def wire_conductances(spec: HardwareSpec, scale) -> list | None:
    """Per dense layer, the wire segment conductance in circuit units (None: ideal wires)."""
    r = spec.wires.r_segment
    if r <= 0:
        return None
    return [1.0 / (float(k) * r) for k in np.atleast_1d(np.asarray(scale, float))]
