"""Small circuits shared by the analog tests."""
import numpy as np

import analog.layers as L
from analog.devices import IdealDiode, MOSDiode, ShockleyDiode
from analog.model import AnalogModel


def block(features=3, hidden=(5,), outputs=2, gain=3.0, vref=0.0, device=None, up=-0.3, down=0.3,
          g=(1e-6, 1e-4), seed=0):
    """Inputs ± → [crossbar → diodes → amplifier] × len(hidden) → crossbar → differential outputs.
    Diode biases ±0.3 V with a Shockley diode (≈0.6 V knee) clamp the hidden nodes near ±0.3 V,
    so with inputs of ±2 V many diodes conduct."""
    device = device or ShockleyDiode(RS=10.0)
    x = L.InputVoltage(features)
    nodes = x
    for k, units in enumerate(hidden):
        h = L.Dense(units, g_min=g[0], g_max=g[1], seed=seed + k)(L.Concatenate()([nodes, L.BiasVoltage([1.0, -1.0])]))
        h = L.DiodeLayer("down", down, device)(L.DiodeLayer("up", up, device)(h))
        nodes = L.Amplification(gain)(h)
    out = L.Dense(2 * outputs, g_min=g[0], g_max=g[1], seed=seed + 99)(L.Concatenate()([nodes, L.BiasVoltage([1.0, -1.0])]))
    return AnalogModel(x, L.CurrentLayer()(out), vref=vref)


DEVICES = {
    "shockley": ShockleyDiode(),
    "shockley_rs": ShockleyDiode(RS=50.0),
    "ideal": IdealDiode(threshold=0.2, r_on=2e3, smoothing=0.02),
    "mos": MOSDiode(VTO=0.3, KP=2e-4, LAMBDA=0.02),
}


def inputs(n, features, scale=2.0, seed=0):
    return np.random.default_rng(seed).uniform(-scale, scale, (n, features))
