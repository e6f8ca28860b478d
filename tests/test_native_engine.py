import numpy as np
import pytest

import analog.layers as L
from analog.devices import ShockleyDiode
from analog.native import NativeEngine, total_energy
from tests.analog_circuits import DEVICES, block, inputs, kcl_residual, largest_currents


@pytest.mark.parametrize("device", list(DEVICES))
@pytest.mark.parametrize("vref", [0.0, 0.6])
def test_operating_point_satisfies_kcl(device, vref):
    """KCL recomputed branch by branch from the element list (tests.analog_circuits), not
    with the engine's own residual; at operating points where diodes really conduct."""
    m = block(hidden=(6, 4), device=DEVICES[device], vref=vref)
    c = m.circuit
    eng = NativeEngine(c)
    x = inputs(40, 3)
    nudge = np.random.default_rng(1).normal(0, 3e-6, (40, c.n_outputs))
    for I in (None, nudge):
        s = eng.solve(m.conductances, x, nudge=I)
        assert s.converged.all()
        net, mag = kcl_residual(c, m.conductances, c.amp_gain, c.amp_offset, s.v, s.src, I)
        assert np.all(np.abs(net) <= 1e-12 + 1e-9 * mag), np.abs(net).max()
    # the diodes conduct: the largest diode current is at least a tenth of the largest
    # current through any crossbar resistor (a clamped node, not a leak of a few nA)
    i_dev, i_bar = largest_currents(c, m.conductances, c.terminal_voltages(s.v, s.src))
    assert i_dev > 0.1 * i_bar, (i_dev, i_bar)


def test_operating_point_is_energy_minimum():
    m = block(hidden=(8,), device=DEVICES["shockley_rs"])
    s = m.solve(inputs(20, 3))
    e0 = m.energy(s)
    rng = np.random.default_rng(1)
    for scale in (1e-4, 1e-2, 0.3):
        for _ in range(5):
            moved = type(s)(**{**s.__dict__, "v": s.v + rng.normal(0, scale, s.v.shape)})
            assert np.all(m.energy(moved) > e0)


def test_energy_derivative_wrt_conductance_is_half_squared_drop():
    m = block(hidden=(5,))
    s = m.solve(inputs(3, 3))
    c, G = m.circuit, [g.copy() for g in m.conductances]
    V = c.terminal_voltages(s.v, s.src)
    for k, blk in enumerate(c.dense):
        i, j = 1, 2
        h = 1e-3 * G[k][i, j]
        Gp = [g.copy() for g in G]; Gp[k][i, j] += h
        Gm = [g.copy() for g in G]; Gm[k][i, j] -= h
        dE = (total_energy(c, Gp, s.v, s.src) - total_energy(c, Gm, s.v, s.src)) / (2 * h)
        expected = blk.scale * 0.5 * (V[:, blk.out_terms[i]] - V[:, blk.in_terms[j]]) ** 2
        np.testing.assert_allclose(dE, expected, rtol=1e-6)


def test_energy_at_the_operating_point_changes_by_half_squared_drop():
    """Envelope theorem: E*(G) = E(v*(G), G) with v* re-solved for every G has dE*/dG = ½ΔV²
    only if v* is the stationary point of this very energy (the engine's KCL and the energy
    agree); a solver of different equations would add a term ∂E/∂v · dv*/dG."""
    m = block(hidden=(5,))
    x = inputs(3, 3)
    eng = m.get_engine("native")
    c, G = m.circuit, [g.copy() for g in m.conductances]
    s = eng.solve(G, x)
    V = c.terminal_voltages(s.v, s.src)
    for k, blk in enumerate(c.dense):
        i, j = 0, 1
        h = 1e-3 * G[k][i, j]
        Gp = [g.copy() for g in G]; Gp[k][i, j] += h
        Gm = [g.copy() for g in G]; Gm[k][i, j] -= h
        sp, sm = eng.solve(Gp, x), eng.solve(Gm, x)
        dE = (total_energy(c, Gp, sp.v, sp.src) - total_energy(c, Gm, sm.v, sm.src)) / (2 * h)
        expected = blk.scale * 0.5 * (V[:, blk.out_terms[i]] - V[:, blk.in_terms[j]]) ** 2
        np.testing.assert_allclose(dE, expected, rtol=1e-5)


def test_nudged_phase_warm_start_and_currents():
    m = block(hidden=(5,))
    x = inputs(10, 3)
    free = m.solve(x)
    I = np.full((10, m.circuit.n_outputs), 1e-6)
    cold = m.solve(x, nudge=I)
    warm = m.solve(x, nudge=I, v0=free.v)
    np.testing.assert_allclose(warm.v, cold.v, atol=1e-9)
    assert warm.iterations.mean() <= cold.iterations.mean()
    # injected current raises V⁺ and lowers V⁻
    dy = m.circuit.outputs(cold.v) - m.circuit.outputs(free.v)
    assert np.all(dy > 0)
    # charge conservation: sources + nudging deliver what the amplifiers' supply and gmin don't
    assert np.isfinite(free.source_currents).all() and (free.power > 0).all()


def test_non_convergence_is_reported_not_hidden():
    m = block(hidden=(5,), device=ShockleyDiode())
    eng = NativeEngine(m.circuit, max_iter=2)
    s = eng.solve(m.conductances, inputs(8, 3, scale=3.0))
    assert (~s.converged).any()
    bad = s.failed
    assert np.isnan(s.v[bad]).all() and list(bad) == s.info["failures"]
    with pytest.raises(Exception, match="did not converge"):
        s.raise_on_failure("native")


def test_power_is_sum_of_element_dissipation_for_linear_network():
    x = L.InputVoltage(2)
    y = L.CurrentLayer()(L.Dense(2, g_min=1e-5, g_max=1e-5)(x))
    from analog.model import AnalogModel
    m = AnalogModel(x, y, gmin=0.0)
    s = m.solve(np.array([[1.0, 0.0]]))
    # each output node sits at the mean of (+1, 0, −1, 0)... by symmetry V = 0; P = Σ G V²
    np.testing.assert_allclose(s.v, 0.0, atol=1e-12)
    np.testing.assert_allclose(s.power, 2 * 1e-5 * (1 + 1), rtol=1e-12)
    # sources deliver that power
    np.testing.assert_allclose((s.source_currents * s.src).sum(1), s.power, rtol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda: L.Dense(3, g_min=0.0), "g_min"),
    (lambda: L.Dense(3, g_min=2e-5, g_max=1e-5), "g_min"),
    (lambda: L.Amplification(gain=-1), "gain"),
    (lambda: L.DiodeLayer("sideways"), "direction"),
    (lambda: L.DiodeLayer("up", device=ShockleyDiode(IS=-1.0)), "IS"),
])
def test_bad_parameters_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layer_wired_to_wrong_shape_is_named():
    dense = L.Dense(3, name="hidden_crossbar")
    dense(L.InputVoltage(2))
    with pytest.raises(ValueError, match="hidden_crossbar.*4.*6"):
        dense(L.InputVoltage(3))


def test_non_finite_input_is_rejected_before_solving():
    m = block()
    x = inputs(4, 3)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="sample 2"):
        m.solve(x)
    with pytest.raises(ValueError, match="shape"):
        m.solve(inputs(4, 5))


def test_convergence_needs_kcl_not_only_a_small_step():
    """With a step tolerance of 1 V the first full Newton step would pass the step test
    alone; the KCL test in amperes (behind an amplifier of gain 10 the scaled residual is
    100× smaller than the current) keeps Newton going to a real operating point."""
    m = block(hidden=(6,), gain=10.0, device=ShockleyDiode())
    c = m.circuit
    x = inputs(20, 3, scale=2.0, seed=4)
    s = NativeEngine(c, tol_v=1.0).solve(m.conductances, x)
    assert s.converged.all() and s.iterations.max() > 2
    net, mag = kcl_residual(c, m.conductances, c.amp_gain, c.amp_offset, s.v, s.src)
    assert np.all(np.abs(net) <= 1e-12 + 1e-9 * mag), np.abs(net).max()
    # with the step test out of play, the KCL test alone (rtol_i = 1e-9 of the currents that
    # meet at a node) bounds the error: a few nV on these ≈ 1 V nodes, wherever Newton started
    ref = NativeEngine(c, tol_v=1e-13).solve(m.conductances, x)
    np.testing.assert_allclose(s.v, ref.v, rtol=0, atol=5e-9)
    with pytest.raises(ValueError, match="tol_i"):
        NativeEngine(c, tol_i=-1.0)


@pytest.mark.parametrize("path", ["compiled", "cholesky", "lu", "pcg", "pcg-fallback"])
def test_schur_solve_matches_a_dense_solve(monkeypatch, path):
    """linear_solve (elimination, then the compiled Cholesky loop, numpy's Cholesky or LU on
    the Schur complement, or conjugate gradients on it; 'pcg-fallback': every sample falls
    back to the direct solve) against a dense solve with K assembled here from the G."""
    import analog.kernels as kernels
    import analog.native as native
    import analog.schur as schur
    if path == "compiled" and kernels.packed_spd_solve() is None:
        pytest.skip("numba is not installed")
    elif path != "compiled":
        monkeypatch.setattr(kernels, "packed_spd_solve", lambda: None)
    monkeypatch.setattr(schur, "CHOLESKY_MIN_BATCH", 1 if path == "cholesky" else 10**9)
    if path.startswith("pcg"):
        monkeypatch.setattr(schur, "PCG_MIN_ORDER", 1)
        monkeypatch.setattr(schur, "PCG_MIN_RATIO", 0)
    if path == "pcg-fallback":
        monkeypatch.setattr(schur, "PCG_MAX_ITER", 0)
    direct = []
    real_direct = schur.SchurSolver._direct
    monkeypatch.setattr(schur.SchurSolver, "_direct", lambda self, *a: direct.append(len(a[2])) or real_direct(self, *a))
    m = block(features=3, hidden=(20,), outputs=7, device=ShockleyDiode())
    c, G = m.circuit, m.conductances
    eng = NativeEngine(c)
    assert len(eng._R) >= native.CHOLESKY_MIN_ORDER
    calls = []
    real = native._cholesky_solve
    monkeypatch.setattr(native, "_cholesky_solve", lambda S, b: calls.append(1) or real(S, b))
    s = eng.solve(G, inputs(5, 3))
    d = eng.hessian_diagonal(s.v, s.src)
    rhs = np.random.default_rng(0).normal(size=s.v.shape)
    x = eng.linear_solve(G, d, rhs)
    assert bool(calls) == (path == "cholesky")
    if path.startswith("pcg"):
        # preconditioned by the inverses of the Schur complements at a nearby state
        solver = eng._linear(G)["schur"]
        _, near = solver.solve_keep(d * 1.05, rhs)
        direct.clear()
        x = solver.solve(d, rhs, precond=near)
        assert direct == ([] if path == "pcg" else [len(rhs)])
    # K from the element list: Σ over edges s·G·(e_i − e_j)(e_i − e_j)ᵀ, amplifier outputs
    # replaced by A·(their input), plus gmin·s on the diagonal
    n = c.n_free
    K = np.diag(c.gmin * c.free_scale)
    for blk, Gb in zip(c.dense, G):
        for r, to in enumerate(blk.out_terms):
            for q, ti in enumerate(blk.in_terms):
                e = np.zeros(n)
                e[to] += 1.0
                if ti < n:
                    e[ti] -= 1.0
                elif ti >= n + c.n_sources:
                    k = ti - n - c.n_sources
                    e[c.amp_in[k]] -= c.amp_gain[k]
                K += blk.row_scale[r] * Gb[r, q] * np.outer(e, e)
    for b in range(len(rhs)):
        np.testing.assert_allclose(x[b], np.linalg.solve(K + np.diag(d[b]), rhs[b]), rtol=1e-9, atol=0)
    # a matrix that is not positive definite falls back to the general solve
    S = np.array([[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(np.linalg.LinAlgError):
        real(S, np.ones((1, 2)))


def test_compiled_spd_solve_flags_a_matrix_that_is_not_positive_definite():
    """The compiled Cholesky loop (analog/kernels.py) against numpy's solve, sample by
    sample; a sample whose S is indefinite is flagged (the Schur solver then uses LU)."""
    import analog.kernels as kernels
    solve = kernels.packed_spd_solve()
    if solve is None:
        pytest.skip("numba is not installed")
    S = np.array([[[1.0, 2.0], [2.0, 1.0]], [[2.0, 1.0], [1.0, 3.0]]])
    iu, ju = np.triu_indices(2)
    b = np.array([[1.0, 1.0], [1.0, -2.0]])
    x, ok = solve(S[:, iu, ju] - np.array([0, 0, 0.5]), np.array([[0, 0.0], [0, 0.5]]), b, iu, ju)
    assert ok.tolist() == [False, True]
    np.testing.assert_allclose(x[1], np.linalg.solve(S[1], b[1]), rtol=1e-15)
