"""The compiled evaluation of a layered block (analog/fused.py): F, its gradient and the
Hessian diagonal against the energy computed from the circuit's branches (native.total_energy)
and the devices' own current law, and the whole solve with the compiled loops against the
numpy paths. The physics of the solves it serves is checked against ngspice and finite
differences in test_locally_connected.py (which runs this path: asserted below)."""
import numpy as np
import pytest

from analog import fused
from analog.native import total_energy
from tests.test_locally_connected import H, W, lc_block

pytest.importorskip("numba")


def _setup(seed=3, B=7):
    m = lc_block(seed=seed)
    c, G = m.circuit, m.conductances
    eng = m.get_engine("native")
    lin = eng._linear(G)
    rng = np.random.default_rng(seed)
    src = c.source_voltages(rng.uniform(-1.2, 1.2, (B, H * W)))
    return m, c, G, eng, lin, src, rng


def test_the_lc_blocks_of_the_tests_take_the_compiled_path():
    _, _, _, eng, lin, _, _ = _setup()
    assert fused.fused_plan(lin["schur"], eng._stack) is not None


def test_energy_gradient_and_hessian_diagonal_against_the_circuit():
    m, c, G, eng, lin, src, rng = _setup()
    nudge = rng.normal(0, 3e-6, (len(src), c.n_outputs))
    inj = c.nudge_currents(nudge) * c.free_scale
    cvec = src @ lin["Cop"] + lin["c0"]
    plan = fused.fused_plan(lin["schur"], eng._stack)
    offs = eng._stack.offsets(src)[0]
    v = c.vref + rng.normal(0, 0.4, (len(src), c.n_free))
    F, r, d, _ = fused.evaluate(plan, lin["Kop"], v, cvec - inj, offs)
    # gradient: K v + c + the devices' currents (native._devices: each device's current law)
    r_dev, d_dev, _ = eng._devices(v, src)
    scale = np.abs(r).max()
    np.testing.assert_allclose(r, v @ lin["K"] + cvec - inj + r_dev, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(d, d_dev, rtol=1e-12, atol=0)
    # F up to a constant per sample: differences between two states against the branch energies
    w = v + rng.normal(0, 0.05, v.shape)
    Fw = fused.evaluate(plan, lin["Kop"], w, cvec - inj, offs)[0]
    ref = total_energy(c, G, w, src, nudge) - total_energy(c, G, v, src, nudge)
    np.testing.assert_allclose(Fw - F, ref, rtol=1e-9, atol=1e-12 * np.abs(F).max())


@pytest.mark.parametrize("warm", [False, True])
def test_solves_with_and_without_the_compiled_loops_agree(warm, monkeypatch):
    m, c, G, eng, lin, src, rng = _setup(seed=5, B=9)
    x = rng.uniform(-1.5, 1.5, (9, H * W))
    nudge = rng.normal(0, 5e-6, (9, c.n_outputs))
    v0 = eng.solve(G, x).v if warm else None
    compiled = eng.solve(G, x, nudge=nudge, v0=v0)
    monkeypatch.setattr(fused, "evaluator", lambda: None)
    monkeypatch.setattr(fused, "relaxer", lambda: None)
    eng._cache_G = None          # the cached plan goes with the conductances' cache
    plain = eng.solve(G, x, nudge=nudge, v0=v0)
    assert compiled.converged.all() and plain.converged.all()
    np.testing.assert_allclose(compiled.v, plain.v, rtol=0, atol=1e-9)
