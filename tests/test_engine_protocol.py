"""Both engines implement analog.engine.Engine: same members, same solve signature, and
Solutions of the same shapes and dtypes whose numbers match a hand-computed linear network."""
import inspect
import shutil

import numpy as np
import pytest

import analog.layers as L
from analog.engine import ClosableEngine, Engine, check_solve_inputs, close_engine
from analog.model import AnalogModel
from analog.native import NativeEngine
from analog.solution import Solution

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")


def _linear_model():
    """Inputs ± → one 4×4 crossbar → two differential outputs: no devices, no amplifiers,
    so every operating point is a weighted mean of the sources (computed by hand below)."""
    x = L.InputVoltage(2)
    d = L.Dense(4, g_min=1e-5, g_max=1e-4, seed=1)
    m = AnalogModel(x, L.CurrentLayer()(d(x)), gmin=1e-12)
    d.set_conductances(np.array([[1e-5, 2e-5, 3e-5, 4e-5],
                                 [9e-5, 1e-5, 5e-5, 2e-5],
                                 [3e-5, 3e-5, 1e-5, 7e-5],
                                 [5e-5, 8e-5, 2e-5, 1e-5]]))
    return m


def _by_hand(G, x, nudge, gmin):
    """KCL at each output node i: Σ_j G_ij (s_j − V_i) + I_i − gmin V_i = 0, with sources
    s = (x, −x) and the nudging pair +I_k into node 2k, −I_k into node 2k+1."""
    s = np.concatenate([x, -x], axis=1)                       # (B, 4)
    inj = np.zeros((len(x), 4))
    inj[:, 0::2], inj[:, 1::2] = nudge, -nudge
    V = (s @ G.T + inj) / (G.sum(1) + gmin)
    delivered = (s * G.sum(0) - V @ G)                        # current out of each source
    power = ((V[:, :, None] - s[:, None, :]) ** 2 * G).sum((1, 2)) + gmin * (V**2).sum(1)
    return V, delivered, power


def _engines(circuit):
    engines = [NativeEngine(circuit)]
    if shutil.which("ngspice"):
        from analog.ngspice import NgspiceEngine
        engines.append(NgspiceEngine(circuit, processes=1))
    return engines


def test_solve_signature_matches_the_protocol():
    from analog.ngspice import NgspiceEngine
    want = inspect.signature(Engine.solve).parameters
    for cls in (NativeEngine, NgspiceEngine):
        got = inspect.signature(cls.solve).parameters
        assert list(got) == list(want), cls
        for name, p in want.items():
            assert (got[name].kind, got[name].default) == (p.kind, p.default), (cls, name)


def test_protocol_rejects_an_object_without_solve():
    class NotAnEngine:
        name = "x"
        circuit = None

    assert not isinstance(NotAnEngine(), Engine)


def test_both_engines_satisfy_engine_and_agree_with_hand_computation():
    m = _linear_model()
    c, G = m.circuit, m.conductances
    x = np.array([[0.5, -0.2], [1.5, 0.7], [-2.0, 0.1]])
    nudge = np.array([[0.0, 0.0], [1e-6, -2e-6], [-3e-6, 4e-7]])
    V, delivered, power = _by_hand(G[0], x, nudge, c.gmin)
    engines = _engines(c)
    try:
        for eng in engines:
            assert isinstance(eng, Engine)
            assert eng.circuit is c and isinstance(eng.name, str)
            sol = eng.solve(G, x, nudge=nudge)
            assert isinstance(sol, Solution)
            for field, shape, kind in [("v", (3, c.n_free), "f"), ("src", (3, c.n_sources), "f"),
                                       ("source_currents", (3, c.n_sources), "f"), ("power", (3,), "f"),
                                       ("converged", (3,), "b"), ("iterations", (3,), "i")]:
                arr = getattr(sol, field)
                assert arr.shape == shape and arr.dtype.kind == kind, (eng.name, field, arr.shape, arr.dtype)
            assert sol.v.dtype == np.float64 and sol.converged.all() and sol.info["failures"] == []
            free = c.dense[0].out_terms
            np.testing.assert_allclose(sol.v[:, free], V, rtol=0, atol=1e-12, err_msg=eng.name)
            np.testing.assert_allclose(sol.source_currents, delivered, rtol=1e-9, atol=1e-17, err_msg=eng.name)
            np.testing.assert_allclose(sol.power, power, rtol=1e-9, err_msg=eng.name)
            # src= instead of x=, and the free phase (nudge=None), take the same path
            again = eng.solve(G, src=sol.src)
            np.testing.assert_allclose(again.v[:, free], _by_hand(G[0], x, 0 * nudge, c.gmin)[0], atol=1e-12)
    finally:
        for eng in engines:
            close_engine(eng)


@needs_ngspice
def test_closable_engines():
    from analog.ngspice import NgspiceEngine
    m = _linear_model()
    native, spice = NativeEngine(m.circuit), NgspiceEngine(m.circuit, processes=1)
    assert isinstance(spice, ClosableEngine) and not isinstance(native, ClosableEngine)
    spice.solve(m.conductances, np.zeros((1, 2)))
    assert spice._pool is not None
    close_engine(spice)
    close_engine(native)                 # nothing to release: must not fail
    assert spice._pool is None


def test_bad_solve_input_is_a_value_error_naming_it():
    m = _linear_model()
    c, G = m.circuit, m.conductances
    cases = [({}, "needs inputs x or source voltages src"),
             ({"src": np.zeros((2, 5))}, r"source voltages of shape \(2, 5\), expected \(batch, 4\)"),
             ({"src": np.full((2, 4), np.nan)}, "non-finite source voltage"),
             ({"src": np.zeros((2, 4)), "nudge": np.zeros((2, 3))}, r"nudging currents of shape \(2, 3\)"),
             ({"src": np.zeros((2, 4)), "nudge": np.full((2, 2), np.inf)}, "non-finite nudging current")]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            check_solve_inputs(c, **kw)
    src, nudge = check_solve_inputs(c, x=np.array([[0.5, -0.2]]))
    np.testing.assert_array_equal(src, [[0.5, -0.2, -0.5, 0.2]])
    assert nudge is None
    engines = _engines(c)
    try:
        for eng in engines:
            for kw, msg in cases + [({"x": np.zeros((2, 3))}, r"shape \(2, 3\)")]:
                with pytest.raises(ValueError, match=msg):
                    eng.solve(G, **kw)
    finally:
        for eng in engines:
            close_engine(eng)
