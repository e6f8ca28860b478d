"""Crossbar wire resistance: the exact terminal reduction against hand-solved networks, the
native engine against ngspice's explicit wire resistors, EP's gradient against the exact
one, and EP training a chip in situ through its wires."""
import numpy as np
import pytest

from analog.devices import ShockleyDiode
from analog.ep import ep_gradients, exact_gradients
from analog.hardware import program, resolve_hardware
from analog.wires import WiredCrossbar
from tests.analog_circuits import EVERY_VARIATION, block, inputs, solve_on_both_engines

WIRES = {"wires": {"r_segment": 1000.0}}
# every variation the wires allow (a gain spread makes a wired crossbar non-reciprocal)
EVERYTHING = {**EVERY_VARIATION, **WIRES,
              "variation": {k: v for k, v in EVERY_VARIATION["variation"].items() if k != "gain_sigma"}}


def test_one_cell_is_a_series_resistor():
    G, R = 1e-3, 50.0
    g = 1.0 / (2 * R + 1 / G)                 # input segment, cell, output segment in series
    np.testing.assert_allclose(WiredCrossbar(np.array([[G]]), 1 / R).l_eq, [[g, -g], [-g, g]], rtol=1e-12)


def test_two_by_two_crossbar_solved_by_hand():
    """Nodes: r_j,i on input line j at column i, c_i,j on output line i at row j. Input j
    drives r_j,0 through one segment; r_j,0 — r_j,1 one segment; output i is read from c_i,1
    through one segment; c_i,0 — c_i,1 one segment; cell (i, j) joins r_j,i and c_i,j."""
    G = np.array([[1e-3, 2e-3], [3e-3, 4e-3]])
    g = 1 / 40.0
    r00, r01, r10, r11, c00, c01, c10, c11 = range(8)
    o0, o1, i0, i1 = range(8, 12)
    edges = [(i0, r00, g), (r00, r01, g), (i1, r10, g), (r10, r11, g),
             (c00, c01, g), (c01, o0, g), (c10, c11, g), (c11, o1, g),
             (r00, c00, G[0, 0]), (r10, c01, G[0, 1]), (r01, c10, G[1, 0]), (r11, c11, G[1, 1])]
    L = np.zeros((12, 12))
    for a, b, w in edges:
        L[a, a] += w; L[b, b] += w; L[a, b] -= w; L[b, a] -= w
    # hold the terminals: inputs at 1 V and −0.5 V, outputs at 0.2 V and 0 V; solve the rest
    VT = np.array([0.2, 0.0, 1.0, -0.5])
    VI = np.linalg.solve(L[:8, :8], -L[:8, 8:] @ VT)
    currents = L[8:, :8] @ VI + L[8:, 8:] @ VT          # current each terminal delivers
    red = WiredCrossbar(G, g)
    np.testing.assert_allclose(red.l_eq @ VT, currents, rtol=1e-10, atol=1e-16)
    cells = np.array([VI[r00] - VI[c00], VI[r10] - VI[c01], VI[r01] - VI[c10], VI[r11] - VI[c11]])
    np.testing.assert_allclose(red.drops(VT[None])[0], cells, rtol=1e-10, atol=1e-15)
    # the wires lose something: the ideal crossbar would deliver more current
    ideal_out = -(G @ VT[2:] - G.sum(1) * VT[:2])
    assert np.all(np.abs(currents[:2]) < np.abs(ideal_out))


def _full_network(G, g):
    """Laplacian of a crossbar with every wire node (module layout of analog/wires.py) and the
    indices of its internal nodes, outputs and inputs."""
    n, m = G.shape
    r = lambda j, i: j * n + i                    # noqa: E731
    c = lambda i, j: n * m + i * m + j            # noqa: E731
    out, inp = 2 * n * m + np.arange(n), 2 * n * m + n + np.arange(m)
    L = np.zeros((2 * n * m + n + m,) * 2)

    def edge(a, b, w):
        L[a, a] += w; L[b, b] += w; L[a, b] -= w; L[b, a] -= w
    for j in range(m):
        edge(inp[j], r(j, 0), g)
        for i in range(n):
            if i + 1 < n:
                edge(r(j, i), r(j, i + 1), g)
            edge(r(j, i), c(i, j), G[i, j])
    for i in range(n):
        for j in range(m):
            edge(c(i, j), c(i, j + 1) if j + 1 < m else out[i], g)
    return L, np.arange(2 * n * m), r, c


def test_reduction_and_drops_match_the_whole_network_solved_densely():
    rng = np.random.default_rng(4)
    G, g = rng.uniform(1e-4, 1e-3, (4, 6)), 2e-2
    L, internal, r, c = _full_network(G, g)
    T = np.arange(len(internal), len(L))
    VT = rng.uniform(-1, 1, (3, 10))
    VI = np.linalg.solve(L[np.ix_(internal, internal)], -L[np.ix_(internal, T)] @ VT.T).T
    currents = VI @ L[np.ix_(internal, T)] + VT @ L[np.ix_(T, T)]
    red = WiredCrossbar(G, g)
    rows, cols = np.r_[True, False, True, True, np.zeros(6, bool)], np.r_[np.ones(4, bool), rng.random(6) < 0.5]
    np.testing.assert_allclose(red.block(rows, cols), (red.l_eq)[np.ix_(rows, cols)], rtol=1e-13, atol=0)
    VT_out = VT * np.r_[np.ones(4), np.zeros(6)]       # inputs at 0 V: the inputs' block is not built
    np.testing.assert_allclose(WiredCrossbar(G, g).currents(VT_out), VT_out @ red.l_eq, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(red.currents(VT), currents, rtol=1e-10, atol=1e-16)
    cells = np.array([[VI[:, r(j, i)] - VI[:, c(i, j)] for j in range(6)] for i in range(4)])
    np.testing.assert_allclose(red.drops(VT), cells.reshape(24, 3).T, rtol=1e-10, atol=1e-15)


def _dense_cell_drops(G, g, VT):
    """Cell drops (B, n, m) of the whole network solved densely for terminal voltages VT."""
    L, internal, r, c = _full_network(G, g)
    T = np.arange(len(internal), len(L))
    VI = np.linalg.solve(L[np.ix_(internal, internal)], -L[np.ix_(internal, T)] @ VT.T).T
    n, m = G.shape
    return np.array([[VI[:, r(j, i)] - VI[:, c(i, j)] for j in range(m)] for i in range(n)]).transpose(2, 0, 1)


def test_ep_drop_sums_match_the_whole_network_solved_densely():
    # the compiled path (numba) and the numpy one must both give the dense network's sums,
    # including EP's case: two phases with the same inputs (their difference goes by moments)
    rng = np.random.default_rng(5)
    G, g, w = rng.uniform(1e-4, 1e-3, (5, 7)), 2e-2, rng.uniform(0, 1, 9)
    Va = rng.uniform(-1, 1, (9, 12))
    Vb = Va + np.r_[1e-3 * rng.normal(size=5), np.zeros(7)] * rng.normal(size=(9, 1))
    da, db = _dense_cell_drops(G, g, Va), _dense_cell_drops(G, g, Vb)
    want_diff = np.einsum("b,bij->ij", w, da ** 2 - db ** 2)
    want_prod = np.einsum("bij,bij->ij", da, db)
    # an argument without inputs (the exact gradient's λ) goes by moments, a batch of 2 by samples
    Lam = np.r_[np.ones(5), np.zeros(7)] * rng.normal(size=(9, 12))
    want_adj = np.einsum("bij,bij->ij", da, _dense_cell_drops(G, g, Lam))
    want_two = np.einsum("b,bij->ij", w[:2], da[:2] ** 2 - db[:2] ** 2)
    # a reduction that recycles another's arrays (written over) for other conductances
    G2 = G[:, ::-1] * 1.5
    want_next = np.einsum("b,bij->ij", w, _dense_cell_drops(G2, g, Va) ** 2 - _dense_cell_drops(G2, g, Vb) ** 2)
    import analog.wire_kernels as wk
    compiled = wk.drop_product_sum() is not None
    for kernel in ([True, False] if compiled else [False]):
        saved = dict(wk._COMPILED)
        if not kernel:
            wk._COMPILED["dps"] = None
        try:
            red = WiredCrossbar(G, g)
            np.testing.assert_allclose(red.drop_difference(Va, Vb, w), want_diff, rtol=1e-8,
                                       atol=1e-10 * np.abs(want_diff).max())
            np.testing.assert_allclose(red.drop_products(Va, Vb), want_prod, rtol=1e-10)
            np.testing.assert_allclose(red.drop_products(Va, Lam), want_adj, rtol=1e-10)
            np.testing.assert_allclose(red.drop_products(Lam, Va), want_adj, rtol=1e-10)
            np.testing.assert_allclose(red.drop_difference(Va[:2], Vb[:2], w[:2]), want_two, rtol=1e-8,
                                       atol=1e-10 * np.abs(want_two).max())
            kept = WiredCrossbar(G2, g, recycle=red)
            np.testing.assert_allclose(kept.drop_difference(Va, Vb, w), want_next, rtol=1e-8,
                                       atol=1e-10 * np.abs(want_next).max())
        finally:
            wk._COMPILED.clear(); wk._COMPILED.update(saved)


def test_wired_chip_with_every_variation_agrees_native_and_ngspice():
    m = block(hidden=(4,), device=ShockleyDiode(RS=10.0), vref=0.6)
    chip = program(m, resolve_hardware("pcm", EVERYTHING), seed=3)
    x = inputs(4, 3)
    G, a, b = solve_on_both_engines(chip, x, t=3600.0)
    assert np.abs(a.source_currents - b.source_currents).max() <= 1e-9
    np.testing.assert_allclose(a.power, b.power, rtol=1e-6)
    # the wires matter here: the same read without them is another operating point
    plain = program(m, resolve_hardware("pcm", {**EVERYTHING, "wires": {"r_segment": 0.0}}), seed=3)
    assert np.abs(plain.solve(x, G_list=G).v - a.v).max() > 1e-3
    text = chip.to_netlist(x[:1], t=3600.0)
    n_seg = sum(2 * o * i for o, i in ((4, 6), (4, 6)))  # hidden: 4 rows × (3±3+2 bias)
    assert text.count("\nRWR") + text.count("\nRWC") >= n_seg // 2 and ".op" in text


def test_wires_behind_a_gain_spread_are_refused():
    m = block(hidden=(4,))
    with pytest.raises(ValueError, match=r"^hardware\.wires: .*gain_sigma"):
        program(m, resolve_hardware("ideal", {"variation": {"gain_sigma": 0.05}, **WIRES}), seed=0)


def _loss(chip, G, x, y):
    return float(chip.model.loss(chip.circuit.outputs(chip.solve(x, G_list=G).v), y)[0].mean())


def test_ep_gradient_through_wires_matches_the_exact_gradient():
    m = block(hidden=(5,))
    m.compile(loss="mse", optimizer="sgd", beta=1e-7, nudging="symmetric")
    chip = program(m, resolve_hardware("ideal", WIRES), seed=0)
    x, y = inputs(16, 3, scale=1.0), np.arange(16) % 2
    G = chip.conductances_at(0.0)
    eng = chip.engine("native")
    ep = ep_gradients(eng, chip.circuit, G, x, y, m.loss, 1e-7, "symmetric", input_grad=True)
    ex = exact_gradients(eng, chip.circuit, G, x, y, m.loss)
    # the input gradient (what co-training passes to the encoder): EP, exact, central differences
    np.testing.assert_allclose(ep.input_grad, ex.input_grad, rtol=1e-6, atol=1e-9 * np.abs(ex.input_grad).max())
    xp, xm = x.copy(), x.copy()
    xp[2, 1] += 1e-5
    xm[2, 1] -= 1e-5
    fd = (_loss(chip, G, xp, y) - _loss(chip, G, xm, y)) / 2e-5 * len(x)
    assert ex.input_grad[2, 1] == pytest.approx(fd, rel=1e-5)
    a, b = np.concatenate([g.ravel() for g in ep.grads]), np.concatenate([g.ravel() for g in ex.grads])
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) >= 0.999
    # the exact gradient is the loss's slope: central differences on a few cells
    for layer, (i, j) in ((0, (1, 2)), (1, (0, 3)), (1, (2, 5))):
        h = 1e-4 * G[layer][i, j]
        Gp = [g.copy() for g in G]; Gm = [g.copy() for g in G]
        Gp[layer][i, j] += h; Gm[layer][i, j] -= h
        fd = (_loss(chip, Gp, x, y) - _loss(chip, Gm, x, y)) / (2 * h)
        assert ex.grads[layer][i, j] == pytest.approx(fd, rel=1e-4, abs=1e-9 * np.abs(b).max())
    # and it is not the gradient of the same chip without wires
    plain = program(m, resolve_hardware("ideal"), seed=0)
    ex0 = exact_gradients(plain.engine("native"), plain.circuit, G, x, y, m.loss)
    b0 = np.concatenate([g.ravel() for g in ex0.grads])
    assert a @ b0 / np.linalg.norm(a) / np.linalg.norm(b0) < 0.995     # EP sees the wires


def test_ep_trains_a_chip_in_situ_through_its_wires():
    from analog.hardware import PulsedOptimizer
    from analog.hardware.insitu import finetune
    from analog.builders import build_dense_network
    rng = np.random.default_rng(0)
    centers = rng.uniform(-0.6, 0.6, (3, 4))
    y = rng.integers(0, 3, 150)
    x = np.clip(centers[y] + rng.normal(0, 0.2, (150, 4)), -1, 1)     # iris-sized: 4 features, 3 classes
    m = build_dense_network(4, 3, hidden=(10,), up_bias=-0.3, down_bias=0.3, seed=1)
    m.compile("mse", "adam", beta=1e-7)
    spec = resolve_hardware("ideal", {"wires": {"r_segment": 2000.0}})
    chip = program(m, spec, seed=0)
    before = (chip.predict(x).argmax(1) == y).mean()
    hist = finetune(chip, x, y, loss=m.loss, beta=1e-7, optimizer=PulsedOptimizer(spec, lr=0.02, base="adam"),
                    epochs=6, batch_size=16)
    after = (chip.predict(x).argmax(1) == y).mean()
    assert hist["loss"][-1] < 0.8 * hist["loss"][0]
    assert after >= max(0.8, before + 0.2), (before, after)


@pytest.mark.parametrize("compiled", [True, False])
def test_preconditioner_solves_its_schur_systems(monkeypatch, compiled):
    # the wired preconditioner's kept-node systems (a compiled Cholesky factor per sample, then
    # substitutions; numpy's LU inverse without numba or where a system is not positive
    # definite) against numpy's dense solve of the same S per sample
    import analog.kernels as kernels
    import analog.wired_schur as ws
    if compiled and kernels.packed_cholesky() is None:
        pytest.skip("numba is not installed")
    if not compiled:
        monkeypatch.setattr(ws, "packed_cholesky", lambda: None)
    rng = np.random.default_rng(6)
    n, nE, B = 5, 7, 9
    A = rng.normal(size=(n + nE, n + nE))
    K = A @ A.T + (n + nE) * np.eye(n + nE)
    E, R = np.arange(nE), np.arange(nE, nE + n)
    K[np.ix_(E, E)] = np.diag(np.diag(K)[E])                     # the base partition: E independent
    from analog.schur import SchurSolver
    base = SchurSolver(K, E, R)
    d = rng.uniform(0.0, 1.0, (B, n + nE))
    v = rng.normal(size=(B, n + nE))
    want = np.array([np.linalg.solve(K + np.diag(di), vi) for di, vi in zip(d, v)])
    P = ws.Elimination(base, d)
    assert (P.L is not None) == compiled
    np.testing.assert_allclose(P.rows()(v), want, rtol=1e-10, atol=1e-12)
    pick = np.array([2, 5])
    np.testing.assert_allclose(P.rows(pick)(v[pick]), want[pick], rtol=1e-10, atol=1e-12)
    # a cold start: every sample at one state, factored once for all (also on a subset)
    same = np.broadcast_to(d[0], d.shape).copy()
    cold = np.array([np.linalg.solve(K + np.diag(same[0]), vi) for vi in v])
    P = ws.Elimination(base, same)
    np.testing.assert_allclose(P.rows()(v), cold, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(P.rows(pick)(v[pick]), cold[pick], rtol=1e-10, atol=1e-12)
    d[3, R] = -50.0 * np.abs(K).max()                          # one S not positive definite: LU for all
    want[3] = np.linalg.solve(K + np.diag(d[3]), v[3])
    P = ws.Elimination(base, d)
    assert P.L is None and P.Sinv is not None
    np.testing.assert_allclose(P.rows()(v), want, rtol=1e-9, atol=1e-12)


def _kron_extended(G, g):
    """The terminal matrix of the whole network by eliminating its internal nodes one by one
    in extended precision (numpy longdouble): a reference with ~1e-19 rounding."""
    L, internal, _, _ = _full_network(G, g)
    L = L.astype(np.longdouble)
    for p in internal:
        L -= np.outer(L[:, p], L[p, :]) / L[p, p]
    return L[len(internal):, len(internal):]


@pytest.mark.parametrize("g, cells, series", [(0.32, (1e-6, 2.5e-5), 16), (0.02, (4e-6, 1e-4), None),
                                              (0.008, (1e-5, 1e-4), 0)])
def test_column_inverses_by_series_match_an_extended_precision_reduction(monkeypatch, g, cells, series):
    # technology wires (2.5 Ω per segment: 0.32 S in the bench chip's units, cells 1e-6–2.5e-5 S):
    # every column block by the Neumann series; resistive wires: some or all blocks fall back
    # to Cholesky (the series' bound fails); each is as exact as the Cholesky-only reduction
    import analog.wire_inverse as wi
    G = np.random.default_rng(9).uniform(*cells, (6, 16))
    want = _kron_extended(G, g)
    red = WiredCrossbar(G, g)
    if series is None:
        assert 0 < red.inverses.series < 16 and red.inverses.cholesky == 16 - red.inverses.series
    else:
        assert red.inverses.series == series and red.inverses.cholesky == 16 - series
    monkeypatch.setattr(wi, "compiled", lambda name, fn: None)    # no numba: Cholesky only
    exact = WiredCrossbar(G, g)
    assert exact.inverses.series == 0
    np.testing.assert_allclose(red._gM, exact._gM, rtol=0, atol=1e-14 * np.abs(exact._gM).max())
    for a, b in ((slice(0, 6), slice(0, 6)), (slice(0, 6), slice(6, None)), (slice(6, None), slice(6, None))):
        scale = float(np.abs(want[a, b]).max())
        err, err_exact = (float(np.abs(r.l_eq[a, b] - want[a, b]).max()) / scale for r in (red, exact))
        assert err < 1e-11 and err <= max(2 * err_exact, 1e-13), (err, err_exact)


@pytest.mark.parametrize("compiled", [True, False])
def test_wired_conjugate_gradients_solve_the_whole_matrix(monkeypatch, compiled):
    # the wired engine's linear solves (compiled updates and numpy's) against a dense solve of
    # K + diag(d) per sample: to rounding level where the result is read (EP's response), and
    # a Newton direction (whose last residual is the recursion's) within its tolerance
    import analog.kernels as kernels
    import analog.wire_kernels as wk
    import analog.wired_engine as we
    import analog.wired_schur as ws
    if compiled and kernels.packed_cholesky() is None:
        pytest.skip("numba is not installed")
    if not compiled:
        monkeypatch.setattr(ws, "pcg_kernels", lambda: (wk._pcg_step_numpy, wk._pcg_turn_numpy))
        monkeypatch.setattr(ws, "packed_cholesky", lambda: None)
    m = block(hidden=(6,))
    m.compile(loss="mse", optimizer="sgd", beta=1e-7, nudging="symmetric")
    chip = program(m, resolve_hardware("ideal", WIRES), seed=0)
    eng, G = chip.engine("native"), chip.conductances_at(0.0)
    lin = eng._linear(G)
    K, rng = lin["K"], np.random.default_rng(11)
    d = rng.uniform(0.0, 2.0, (9, len(K))) * np.abs(np.diag(K)).max()
    rhs = rng.normal(size=(9, len(K)))
    want = np.array([np.linalg.solve(K + np.diag(di), bi) for di, bi in zip(d, rhs)])
    np.testing.assert_allclose(eng.linear_solve(G, d, rhs), want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    x = lin["schur"].solve(d, rhs)
    true_residual = rhs - (x @ K + d * x)
    assert (np.abs(true_residual).max(1) <= 1.01 * we.DIRECTION_RTOL * np.abs(rhs).max(1)).all()


@pytest.mark.parametrize("compiled", [True, False])
def test_row_line_factors_give_the_dense_inverses(monkeypatch, compiled):
    # each row line's A_j⁻¹[i, k] = u[j, min]·w[j, max], compiled recurrences and numpy's,
    # against LAPACK's inverse of the tridiagonal A_j written out
    import analog.wires as w_mod
    if compiled and w_mod.row_line_recurrences() is None:
        pytest.skip("numba is not installed")
    if not compiled:
        monkeypatch.setattr(w_mod, "row_line_recurrences", lambda: None)
    G, g = np.random.default_rng(3).uniform(1e-5, 1e-4, (7, 5)), 0.05
    u, w = w_mod._row_line_factors(G, g)
    for j in range(5):
        A = np.diag(G[:, j] + 2 * g) - g * (np.eye(7, k=1) + np.eye(7, k=-1))
        A[-1, -1] -= g                                 # the far end has one segment
        i, k = np.indices((7, 7))
        np.testing.assert_allclose(u[j, np.minimum(i, k)] * w[j, np.maximum(i, k)], np.linalg.inv(A), rtol=1e-12)


def test_wired_chip_solves_in_the_unwired_chips_newton_iterations():
    # the wires couple the outputs with each other; the start's block relaxation holds those weak
    # couplings instead of giving up its hidden/output alternation, and Newton directions are
    # solved tightly enough to keep quadratic convergence: the Fashion-sized chip with 2.5 Ω
    # wires takes the iterations of the same read without wires (before: 4.0 against 3.02)
    from analog.builders import build_dense_network
    model = build_dense_network(150, 10, hidden=(100,), g_min=1e-7, g_max=2e-5, gain=4.0, up_bias=-0.3,
                                down_bias=0.3, seed=0)
    edges = {"dac": {"bits": 8, "range": 1.0}, "adc": {"bits": 8, "range": 1.0}}
    wired = program(model, resolve_hardware("pcm", {**edges, "wires": {"r_segment": 2.5}}), seed=0)
    plain = program(model, resolve_hardware("pcm", edges), seed=0)
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (64, 150))
    G = wired.conductances_at(3600.0)
    a, b = wired.solve(x, G_list=G), plain.solve(x, G_list=G)
    assert a.converged.all() and b.converged.all()
    assert a.iterations.mean() <= b.iterations.mean() + 0.25, (a.iterations.mean(), b.iterations.mean())
