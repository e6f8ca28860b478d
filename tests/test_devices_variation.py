"""Per-element circuits (analog.circuit.vary_circuit): every diode and amplifier with its own
parameters. Checked against independent computations: ngspice on the netlist, KCL
recomputed here from the element list, the energy, finite differences of the loss."""
import shutil

import numpy as np
import pytest

from analog.circuit import vary_circuit
from analog.devices import IdealDiode, MOSDiode, ShockleyDiode
from analog.ep import ep_gradients, exact_gradients
from analog.losses import MSE
from analog.native import NativeEngine, total_energy
from tests.analog_circuits import block, inputs, kcl_residual, largest_currents, terminal_voltages

HAS_NGSPICE = shutil.which("ngspice") is not None


def _varied(kind: str, seed: int = 0, hidden=(6,), vref: float = 0.0):
    """A 4 → 6 → 2-output block whose diodes (IS log-normal, or VTO normal for MOS diodes)
    and amplifiers (gain, offset) all differ. Returns (model, varied circuit, realised values)."""
    device = {"shockley": ShockleyDiode(IS=1e-14, RS=20.0), "shockley0": ShockleyDiode(IS=1e-14),
              "mos": MOSDiode(VTO=0.3, KP=2e-4, LAMBDA=0.02), "ideal": IdealDiode(0.2, 2e3, 0.02)}[kind]
    m = block(features=4, hidden=hidden, outputs=2, gain=3.0, vref=vref, device=device, seed=seed)
    c = m.circuit
    rng = np.random.default_rng(seed)
    n_amp = len(c.amp_in)
    gain = 3.0 * np.exp(0.15 * rng.standard_normal(n_amp))
    offset = 0.02 * rng.standard_normal(n_amp)
    params = {}
    for blk in c.nonlinear:
        n = len(blk.node_terms)
        if kind.startswith("shockley"):
            params[blk.layer.name] = {"IS": 1e-14 * np.exp(0.8 * rng.standard_normal(n))}
        elif kind == "mos":
            params[blk.layer.name] = {"VTO": 0.3 + 0.1 * rng.standard_normal(n)}
        else:
            params[blk.layer.name] = {"threshold": 0.2 + 0.03 * rng.standard_normal(n)}
    cv = vary_circuit(c, amp_gain=gain, amp_offset=offset, device_params=params)
    return m, cv, dict(gain=gain, offset=offset, params=params)


@pytest.mark.parametrize("kind", ["shockley", "shockley0", "mos", "ideal"])
@pytest.mark.parametrize("vref", [0.0, 0.6])
def test_kcl_at_every_free_node_of_a_varied_circuit(kind, vref):
    m, c, r = _varied(kind, seed=1, vref=vref)
    x = inputs(12, 4, seed=3)
    nudge = np.random.default_rng(0).normal(0, 3e-6, (12, c.n_outputs))
    for I in (None, nudge):
        s = NativeEngine(c).solve(m.conductances, x, nudge=I)
        assert s.converged.all()
        net, mag = kcl_residual(c, m.conductances, r["gain"], r["offset"], s.v, s.src, I)
        assert np.all(np.abs(net) <= 1e-12 + 1e-9 * mag), np.abs(net).max()


def test_varied_parameters_reach_the_circuit():
    m, c, r = _varied("shockley")
    np.testing.assert_array_equal(c.amp_gain, r["gain"])
    np.testing.assert_array_equal(c.amp_offset, r["offset"])
    for blk in c.nonlinear:
        IS = r["params"][blk.layer.name]["IS"]
        assert blk.device.instance(2).IS == IS[2] and blk.device.size == len(IS)
    # energy scales: the first crossbar's rows carry s ∝ A², the output rows one scale
    first = c.dense[0].row_scale
    np.testing.assert_allclose(first / first.mean(), r["gain"] ** 2 / (r["gain"] ** 2).mean(), rtol=1e-12)
    np.testing.assert_allclose(c.out_scale, first[0] / r["gain"][0] ** 2, rtol=1e-12)
    # the original circuit is untouched
    assert np.all(m.circuit.amp_gain == 3.0) and m.circuit.nonlinear[0].device.size is None


def test_operating_point_of_a_varied_circuit_is_the_energy_minimum():
    m, c, r = _varied("shockley", seed=2)
    G, x = m.conductances, inputs(10, 4, seed=4)
    nudge = np.random.default_rng(1).normal(0, 3e-6, (10, c.n_outputs))
    s = NativeEngine(c).solve(G, x, nudge=nudge)
    e0 = total_energy(c, G, s.v, s.src, nudge)
    rng = np.random.default_rng(5)
    for step in (1e-4, 1e-2, 0.2):
        for _ in range(5):
            e = total_energy(c, G, s.v + rng.normal(0, step, s.v.shape), s.src, nudge)
            assert np.all(e > e0)


def _cosine(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("kind", ["shockley", "mos"])
def test_ep_gradients_on_a_varied_circuit_match_the_exact_ones(kind):
    m, c, _ = _varied(kind, seed=3)
    G, x, labels = m.conductances, inputs(16, 4, seed=6), np.arange(16) % 2
    eng, loss = NativeEngine(c, tol_v=1e-13), MSE(amplitude=0.3)
    ex = exact_gradients(eng, c, G, x, labels, loss)
    ep = ep_gradients(eng, c, G, x, labels, loss, beta=1e-7, nudging="symmetric", input_grad=True)
    for k in range(len(G)):
        assert _cosine(ep.grads[k], ex.grads[k]) >= 0.999
    assert np.isfinite(ep.input_grad).all() and _cosine(ep.input_grad, ex.input_grad) >= 0.999
    # the exact gradient itself against finite differences of the loss (re-solved circuits)
    def cost(Gs, xs):
        return loss(c.outputs(eng.solve(Gs, xs).v), labels)[0].mean()
    rng = np.random.default_rng(0)
    for k in range(len(G)):
        i, j = rng.integers(G[k].shape[0]), rng.integers(G[k].shape[1])
        h = 1e-4 * G[k][i, j]
        Gp = [g.copy() for g in G]; Gp[k][i, j] += h
        Gm = [g.copy() for g in G]; Gm[k][i, j] -= h
        fd = (cost(Gp, x) - cost(Gm, x)) / (2 * h)
        assert abs(fd - ex.grads[k][i, j]) <= 1e-4 * abs(fd) + 1e-9 * np.abs(ex.grads[k]).max()
    h = 1e-5
    xp, xm = x.copy(), x.copy()
    xp[:, 1] += h
    xm[:, 1] -= h
    fd = (loss(c.outputs(eng.solve(G, xp).v), labels)[0] - loss(c.outputs(eng.solve(G, xm).v), labels)[0]) / (2 * h)
    np.testing.assert_allclose(ex.input_grad[:, 1], fd, rtol=1e-4, atol=1e-8 * np.abs(fd).max())


def test_second_amplifier_layer_with_varied_gains_has_no_energy_function():
    m = block(features=3, hidden=(4, 3), outputs=2)
    c = m.circuit
    gain = np.full(len(c.amp_in), 3.0)
    gain[:4] *= np.linspace(0.9, 1.1, 4)        # first amplifier layer: fine
    assert vary_circuit(c, amp_gain=gain).dense[0].row_scale.std() > 0
    gain[5] = 3.3                               # one amplifier of the second layer
    with pytest.raises(ValueError, match="no energy function.*non-reciprocal"):
        vary_circuit(c, amp_gain=gain)


@pytest.mark.parametrize("bad, message", [
    (dict(amp_gain=np.ones(3)), "amp_gain has shape"),
    (dict(amp_gain=-np.ones(6)), "amp_gain must be finite and > 0"),
    (dict(device_params={"nope": {"IS": 1e-14}}), "unknown diode layer"),
    (dict(device_params="first:IS_neg"), "IS"),
    (dict(device_params="first:size"), "length"),
    (dict(device_params="first:VTO"), "no parameter"),
])
def test_bad_variation_is_named(bad, message):
    m = block(features=4, hidden=(6,), outputs=2)
    layer = m.circuit.nonlinear[0].layer.name
    dp = bad.get("device_params")
    if dp == "first:IS_neg":
        bad = dict(device_params={layer: {"IS": -np.ones(6)}})
    elif dp == "first:size":
        bad = dict(device_params={layer: {"IS": np.full(4, 1e-14)}})
    elif dp == "first:VTO":
        bad = dict(device_params={layer: {"VTO": np.zeros(6)}})
    with pytest.raises(ValueError, match=message):
        vary_circuit(m.circuit, **bad)


def test_netlist_writes_one_model_per_distinct_instance_and_the_offsets():
    m, c, r = _varied("shockley")
    from analog.netlist import NetlistPlan
    plan = NetlistPlan(c)
    distinct = {float(v) for p in r["params"].values() for v in p["IS"]}
    assert len(plan.model_lines) == len(distinct) == 12
    text = plan.text(m.conductances, c.source_voltages(inputs(1, 4))[0])
    for k, off in enumerate(r["offset"]):
        assert f"VS{k} " in text and repr(float(-off)) in text
    # a scalar device still writes one card
    assert len(NetlistPlan(m.circuit).model_lines) == 1


@pytest.mark.skipif(not HAS_NGSPICE, reason="ngspice not installed")
@pytest.mark.parametrize("kind,vref", [("shockley", 0.0), ("shockley0", 0.6), ("mos", 0.6), ("ideal", 0.0)])
def test_native_and_ngspice_agree_on_a_varied_circuit(kind, vref):
    from analog.ngspice import NgspiceEngine
    m, c, _ = _varied(kind, seed=4, vref=vref)
    G = m.conductances
    x = np.concatenate([inputs(6, 4, scale=2.0, seed=7), inputs(2, 4, scale=0.05, seed=8)])
    nudge = np.random.default_rng(2).normal(0, 5e-6, (len(x), c.n_outputs))
    eng = NativeEngine(c)
    with NgspiceEngine(c, processes=1) as spice:
        for I in (None, nudge):
            a, b = eng.solve(G, x, nudge=I), spice.solve(G, x, nudge=I)
            assert a.converged.all() and b.converged.all()
            np.testing.assert_allclose(b.v, a.v, rtol=0, atol=1e-6)
            np.testing.assert_allclose(b.source_currents, a.source_currents, rtol=1e-6, atol=1e-9)
    # the diodes do conduct: the largest device current is a sizeable share of the largest
    # crossbar branch current (not a leakage of a few nA)
    i_dev, i_bar = largest_currents(c, G, terminal_voltages(c, c.amp_gain, c.amp_offset, a.v, a.src))
    assert i_dev > 0.1 * i_bar, (i_dev, i_bar)


def skip_block(gain=4.0, seed=0):
    """Inputs feed the first crossbar and, across the amplifier, the output crossbar too:
    the input sources drive blocks of energy scale 1 and 1/A²."""
    import analog.layers as L
    from analog.model import AnalogModel
    x = L.InputVoltage(3)
    h = L.Dense(6, g_min=1e-6, g_max=1e-4, seed=seed)(L.Concatenate()([x, L.BiasVoltage([1.0, -1.0])]))
    h = L.DiodeLayer("down", 0.3, ShockleyDiode(RS=10.0))(L.DiodeLayer("up", -0.3, ShockleyDiode(RS=10.0))(h))
    a = L.Amplification(gain)(h)
    out = L.Dense(4, g_min=1e-6, g_max=1e-4, seed=seed + 1)(L.Concatenate()([a, x, L.BiasVoltage([1.0, -1.0])]))
    return AnalogModel(x, L.CurrentLayer()(out))


def test_ep_input_gradient_across_a_skip_connection():
    """Issue 14: a source feeding crossbars of different energy scales made the EP input
    gradient all-NaN. It is now the difference of scale-weighted source currents."""
    m = skip_block()
    c, G = m.circuit, m.conductances
    assert len({float(np.max(b.row_scale)) for b in c.dense}) == 2      # two energy scales
    x, labels = inputs(12, 3, seed=9), np.arange(12) % 2
    eng, loss = NativeEngine(c, tol_v=1e-13), MSE(amplitude=0.3)
    ex = exact_gradients(eng, c, G, x, labels, loss)
    h = 1e-5                                                # exact vs finite differences
    xp, xm = x.copy(), x.copy()
    xp[:, 0] += h
    xm[:, 0] -= h
    fd = (loss(c.outputs(eng.solve(G, xp).v), labels)[0] - loss(c.outputs(eng.solve(G, xm).v), labels)[0]) / (2 * h)
    np.testing.assert_allclose(ex.input_grad[:, 0], fd, rtol=1e-4, atol=1e-8 * np.abs(fd).max())
    for nudging, beta in (("symmetric", 1e-7), ("positive", 1e-9)):
        ep = ep_gradients(eng, c, G, x, labels, loss, beta=beta, nudging=nudging, input_grad=True)
        assert np.isfinite(ep.input_grad).all()
        assert _cosine(ep.input_grad, ex.input_grad) >= 0.999


@pytest.mark.skipif(not HAS_NGSPICE, reason="ngspice not installed")
@pytest.mark.parametrize("kind", ["mos", "shockley"])
def test_standalone_netlist_of_a_varied_circuit_runs_in_ngspice_batch_mode(kind, tmp_path):
    """to_netlist (the PySpice-built netlist) of a varied circuit is runnable as is with
    `ngspice -b`; its node voltages equal the native engine's and the amplifier outputs
    follow V_ref + A_k·(V_in − V_ref) + offset_k with the realised A_k and offset_k."""
    import re
    import subprocess
    from analog.netlist import NetlistPlan, to_netlist
    m, c, r = _varied(kind, seed=4, vref=0.6)
    x = inputs(1, 4, seed=7)
    text = to_netlist(c, m.conductances, x[0])
    assert ".op" in text and text.rstrip().endswith(".end")
    path = tmp_path / "block.cir"
    path.write_text(text.replace(".end\n", ".control\nset numdgt=15\nrun\nprint all\n.endc\n.end\n"))
    out = subprocess.run(["ngspice", "-b", str(path)], capture_output=True, text=True, timeout=60).stdout
    vals = {a.lower(): float(b) for a, b in re.findall(r"^\s*([\w#]+) = ([-+0-9.eE]+)\s*$", out, re.M)}
    plan = NetlistPlan(c)
    spice_v = np.array([vals[n] for n in plan.free_nodes])
    s = NativeEngine(c).solve(m.conductances, x)
    np.testing.assert_allclose(spice_v, s.v[0], rtol=0, atol=1e-6)
    amp_out = np.array([vals[out_node] for _, _, out_node, _, _ in plan.amps])
    np.testing.assert_allclose(amp_out, 0.6 + r["gain"] * (spice_v[c.amp_in] - 0.6) + r["offset"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("vto", [-0.5, -0.2, 0.0, 0.4, 0.8])
def test_mos_diode_current_is_passive_monotone_and_consistent(vto):
    """I(0) = 0, I·u ≥ 0, I increasing; dI/du and d(co-content)/du against central differences
    of I and of the co-content, per element of an array device (every region is crossed)."""
    n = 3
    dev = MOSDiode(VTO=np.full(n, vto) + np.array([0.0, 0.05, -0.05]), KP=2e-4, LAMBDA=np.array([0.0, 0.05, 0.1]))
    u = np.linspace(-1.2, 1.2, 4801)[:, None] * np.ones(n)
    I, g = dev.current(u)
    assert np.all(np.abs(dev.current(np.zeros((1, n)))[0]) < 1e-13)
    assert np.all(I * u >= -1e-13) and np.all(np.diff(I, axis=0) >= 0)
    h = 1e-6
    Ip, Im = dev.current(u + h)[0], dev.current(u - h)[0]
    np.testing.assert_allclose(g, (Ip - Im) / (2 * h), rtol=1e-5, atol=1e-9)
    Cp, Cm = dev.cocontent(u + h), dev.cocontent(u - h)
    np.testing.assert_allclose((Cp - Cm) / (2 * h), I, rtol=1e-5, atol=1e-10)
    for k in range(n):   # the array device is the stack of its scalar instances
        np.testing.assert_array_equal(dev.instance(k).current(u[:, k])[0], I[:, k])


def test_array_devices_equal_their_scalar_instances():
    """Per-element Shockley (RS zero and non-zero mixed) and ideal diodes: current,
    conductance, co-content and the pnjlim step limit equal those of each scalar instance."""
    rng = np.random.default_rng(0)
    devices = [ShockleyDiode(IS=1e-14 * np.exp(rng.normal(0, 1, 4)), N=np.array([1.0, 1.2, 1.0, 1.5]),
                             RS=np.array([0.0, 10.0, 0.0, 50.0])),
               IdealDiode(threshold=np.array([0.1, 0.2, 0.3, 0.25]), r_on=2e3, smoothing=0.02)]
    u = rng.uniform(-1, 1.0, (50, 4))
    u_new = u + rng.uniform(-0.5, 0.8, u.shape)
    for dev in devices:
        dev.validate()
        I, g = dev.current(u)
        C = dev.cocontent(u)
        lim = dev.limit(u, u_new)
        for k in range(4):
            one = dev.instance(k)
            assert one.size is None and np.ndim(getattr(one, "IS", 0.0)) == 0
            Ik, gk = one.current(u[:, k])
            np.testing.assert_allclose(I[:, k], Ik, rtol=1e-13, atol=0)
            np.testing.assert_allclose(g[:, k], gk, rtol=1e-13, atol=0)
            np.testing.assert_allclose(C[:, k], one.cocontent(u[:, k]), rtol=1e-12, atol=1e-30)
            if one.needs_limiting:
                np.testing.assert_allclose(lim[:, k], one.limit(u[:, k], u_new[:, k]), rtol=1e-13)
    with pytest.raises(ValueError, match="different lengths"):
        ShockleyDiode(IS=np.ones(3) * 1e-14, RS=np.zeros(4))


def test_numpy_scalars_write_plain_spice_numbers():
    dev = ShockleyDiode(IS=np.float64(2e-14), N=np.array(1.5))
    assert dev.spice_models()[0].endswith("D(IS=2e-14 N=1.5 RS=0.0)")
    assert MOSDiode(VTO=np.float32(0.25)).spice_models()[0].count("VTO=0.25 ") == 1


def test_crossbar_mixing_nodes_before_and_after_an_amplifier_is_refused_at_compile():
    import analog.layers as L
    from analog.model import AnalogModel
    x = L.InputVoltage(2)
    h = L.Dense(3, name="hid")(x)
    a = L.Amplification(2.0, name="amp")(h)
    out = L.Dense(2, name="mixer")(L.Concatenate()([h, a]))
    with pytest.raises(ValueError, match=r"Dense layer 'mixer' \(fed by amplifier layer\(s\) \['amp'\]\).*no energy function"):
        AnalogModel(x, L.CurrentLayer()(out))
    # the same wiring with a gain of 1 is reciprocal: every node has scale 1
    x = L.InputVoltage(2)
    h = L.Dense(3)(x)
    out = L.Dense(2)(L.Concatenate()([h, L.Amplification(1.0)(h)]))
    assert np.all(AnalogModel(x, L.CurrentLayer()(out)).circuit.free_scale == 1.0)
