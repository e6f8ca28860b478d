"""Native engine vs ngspice on the same circuits: node voltages to ≤ 1e-6 V, source currents
to ≤ 1e-9 A + 1e-6 relative, diodes conducting and not."""
import shutil

import numpy as np
import pytest

from analog.devices import IdealDiode, MOSDiode, ShockleyDiode
from analog.native import NativeEngine
from analog.ngspice import NgspiceEngine
from analog.solution import device_branch_voltages
from tests.analog_circuits import block, inputs

pytestmark = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")

DEVICES = {
    "shockley": ShockleyDiode(),
    "shockley_rs": ShockleyDiode(IS=2e-14, N=1.3, RS=50.0),
    "ideal": IdealDiode(threshold=0.2, r_on=2e3, smoothing=0.02),
    "mos": MOSDiode(VTO=0.3, KP=2e-4, LAMBDA=0.02),
}

# (device, hidden layers, gain, vref, nudging): every device with one and two hidden layers,
# gains from 1 to 10, both reference levels, nudging on and off
CASES = [
    ("shockley", (6,), 1.0, 0.0, False),
    ("shockley", (5, 4), 4.0, 0.6, True),
    ("shockley_rs", (6,), 10.0, 0.6, False),
    ("shockley_rs", (5, 3), 2.5, 0.0, True),
    ("ideal", (6,), 4.0, 0.0, True),
    ("ideal", (4, 4), 1.5, 0.6, False),
    ("mos", (6,), 3.0, 0.6, True),
    ("mos", (5, 4), 7.0, 0.0, False),
]


@pytest.mark.parametrize("device,hidden,gain,vref,nudging", CASES,
                         ids=[f"{d}-{len(h)}h-A{g}-vref{v}-{'nudge' if n else 'free'}" for d, h, g, v, n in CASES])
def test_native_and_ngspice_agree(device, hidden, gain, vref, nudging):
    seed = 17 * CASES.index((device, hidden, gain, vref, nudging)) + 3
    m = block(features=4, hidden=hidden, outputs=2, gain=gain, vref=vref, device=DEVICES[device], seed=seed)
    c, G = m.circuit, m.conductances
    # inputs up to ±2 V against diode biases of ±0.3 V: some samples clamp, some do not
    x = np.concatenate([inputs(8, 4, scale=2.0, seed=seed), inputs(4, 4, scale=0.05, seed=seed + 1)])
    nudge = (np.random.default_rng(seed).normal(0, 5e-6, (len(x), c.n_outputs)) if nudging else None)
    native = NativeEngine(c).solve(G, x, nudge=nudge)
    with NgspiceEngine(c, processes=2) as eng:
        spice = eng.solve(G, x, nudge=nudge)
    assert native.converged.all() and spice.converged.all(), spice.info["failures"]

    # the circuits exercise the nonlinearity: some devices conduct strongly, some are off
    V = c.terminal_voltages(native.v, native.src)
    currents = np.concatenate([np.abs(blk.device.current(device_branch_voltages(c, blk, V))[0]).ravel()
                               for blk in c.nonlinear])
    assert currents.max() > 1e-6 and currents.min() < 1e-9

    np.testing.assert_allclose(spice.v, native.v, rtol=0, atol=1e-6)
    np.testing.assert_allclose(spice.source_currents, native.source_currents, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(spice.power, native.power, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("vto", [-0.5, -0.2, 0.0, 0.4, 0.8])
def test_mos_diode_agrees_with_ngspice_level1_in_every_region(vto):
    """SPICE level 1 swaps drain and source when u < 0: with VTO < 0 the diode-connected
    MOSFET conducts both ways (linear region around u = 0, saturation beyond |u| > |VTO|)."""
    dev = MOSDiode(VTO=vto, KP=2e-4, LAMBDA=0.05)
    I0, g0 = dev.current(np.array([0.0]))
    assert abs(I0[0]) < 1e-13    # passive: no current at 0 V
    m = block(features=4, hidden=(6,), outputs=2, gain=3.0, vref=0.6, device=dev, seed=11)
    c, G = m.circuit, m.conductances
    x = np.concatenate([inputs(10, 4, scale=4.0, seed=5), inputs(4, 4, scale=0.1, seed=6)])
    nudge = np.random.default_rng(3).normal(0, 5e-6, (len(x), c.n_outputs))
    native = NativeEngine(c).solve(G, x, nudge=nudge)
    with NgspiceEngine(c, processes=1) as eng:
        spice = eng.solve(G, x, nudge=nudge)
    assert native.converged.all() and spice.converged.all()
    np.testing.assert_allclose(spice.v, native.v, rtol=0, atol=1e-6)
    np.testing.assert_allclose(spice.source_currents, native.source_currents, rtol=1e-6, atol=1e-9)
    V = c.terminal_voltages(native.v, native.src)
    u = np.concatenate([device_branch_voltages(c, blk, V).ravel() for blk in c.nonlinear])
    i = dev.current(u)[0]
    assert np.abs(i).max() > 1e-6                        # some devices conduct strongly
    if vto < 0:                                          # ... backwards too (u < 0, drain/source swapped)
        assert np.abs(i[u < 0]).max() > 1e-6
