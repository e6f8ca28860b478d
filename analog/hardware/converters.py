"""The chip's converters: an input DAC per feature and an output ADC per differential output.

Both are uniform quantisers over a symmetric full scale [−R, +R] with 2^bits levels, the
two ends included (a mid-rise quantiser: step Δ = 2R / (2^bits − 1); 1 bit is the sign,
±R). A value outside the full scale clips to the nearest end code:

    code(u) = clip(floor((u + R)/Δ + ½), 0, 2^bits − 1),    out = −R + code·Δ

DAC: x (volts around V_ref) → out(x) + N(0, noise) per conversion.
ADC: y (a differential output, volts) → out(y + offset_k + N(0, noise)), offset_k drawn
once per chip from N(0, offset_sigma). The ADC's R is fixed, or set from a calibration set
(the largest |y| the chip produces on it, so no calibration sample clips).

`EdgeCircuit` is the chip's circuit with its converters in the two places every read goes
through: `source_voltages(x)` (the DAC, before the block) and `outputs(v)` (the ADC, before
the class decision and the loss); engines, EP and the pipeline call nothing else.
"""
from __future__ import annotations

import copy

import numpy as np

from ..circuit import CompiledCircuit
from .spec import HardwareSpec


def quantise(u, bits: int, full_scale: float) -> np.ndarray:
    """The code values of a `bits`-bit uniform quantiser over [−full_scale, +full_scale]."""
    u = np.asarray(u, float)
    top = 2 ** int(bits) - 1
    step = 2.0 * full_scale / top
    code = np.clip(np.floor((u + full_scale) / step + 0.5), 0, top)
    return -full_scale + code * step


class Converters:
    """A chip's DAC and ADC (spec.dac, spec.adc), with the per-chip ADC offsets and the noise
    stream of its reads."""

    def __init__(self, spec: HardwareSpec, n_outputs: int, rng_offset, rng_noise, adc_range: float | None = None):
        self.dac_spec, self.adc_spec = spec.dac, spec.adc
        self.offset = self.adc_spec.offset_sigma * rng_offset.standard_normal(n_outputs)
        self.adc_range = float(self.adc_spec.range if adc_range is None else adc_range)
        self._rng = rng_noise

    @property
    def active(self) -> bool:
        d, a = self.dac_spec, self.adc_spec
        return (d.bits is not None or d.noise > 0 or a.bits is not None or a.noise > 0
                or a.offset_sigma > 0)

    def dac(self, x) -> np.ndarray:
        d = self.dac_spec
        x = np.asarray(x, float)
        if d.bits is not None:
            x = quantise(x, d.bits, d.range)
        if d.noise > 0:
            x = x + d.noise * self._rng.standard_normal(x.shape)
        return x

    def adc(self, y) -> np.ndarray:
        a = self.adc_spec
        y = np.asarray(y, float) + self.offset
        if a.noise > 0:
            y = y + a.noise * self._rng.standard_normal(y.shape)
        return y if a.bits is None else quantise(y, a.bits, self.adc_range)

    def calibrate(self, y_raw) -> float:
        """Set the ADC's full scale to the largest |y| of a calibration set's raw outputs."""
        peak = float(np.max(np.abs(np.asarray(y_raw, float) + self.offset))) if np.size(y_raw) else 0.0
        if not (np.isfinite(peak) and peak > 0):
            raise ValueError(f"hardware.adc.calibrate: the calibration set gives outputs of peak {peak!r}; "
                             "need a finite peak > 0")
        self.adc_range = peak
        return peak


class EdgeCircuit(CompiledCircuit):
    """A compiled circuit read through converters, with optional crossbar wires.

    `edges`: Converters or None; `wire_g`: per dense block, the conductance of one wire
    segment in the circuit's (trained) units, or None for ideal wires (analog/wires.py)."""

    edges: Converters | None
    wire_g: list

    def source_voltages(self, x: np.ndarray) -> np.ndarray:
        if self.edges is not None:
            x = self.edges.dac(x)
        return super().source_voltages(x)

    def raw_outputs(self, v: np.ndarray) -> np.ndarray:
        """Differential outputs before the ADC."""
        return super().outputs(v)

    def outputs(self, v: np.ndarray) -> np.ndarray:
        y = super().outputs(v)
        return y if self.edges is None else self.edges.adc(y)


def with_edges(circuit: CompiledCircuit, converters: Converters | None, wire_g: list | None) -> CompiledCircuit:
    """`circuit` itself when there is nothing at its edges, else an EdgeCircuit copy of it."""
    wired = wire_g is not None and any(g is not None for g in wire_g)
    if (converters is None or not converters.active) and not wired:
        return circuit
    if wired:
        from ..wired_engine import check_wired
        check_wired(circuit, wire_g)
    edge = copy.copy(circuit)
    edge.__class__ = EdgeCircuit
    edge.edges = converters if converters is not None and converters.active else None
    edge.wire_g = list(wire_g) if wired else [None] * len(circuit.dense)
    return edge
