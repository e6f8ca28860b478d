"""The chip's training step in time (analog/training_energy.py): every phase's energy against
a hand computation from the element list on a circuit without hidden layer (two output
nodes, a crossbar from the sources, g_min shunts, nudging current sources), the energy
books (sources = dissipation + Δ ½ C v²) along the free and the nudged phases, the step's
totals, the pulse count, and bad pulse figures."""
import numpy as np
import pytest

from analog.capacitance import node_capacitance
from analog.errors import AnalogInputError
from analog.training_energy import (PulseSpec, SampleHold, one_pulse_per_device, programming_cost,
                                    training_step)
from analog.transient import NativeTransient, TransientSpec
from tests.analog_circuits import block, inputs


def _hand_powers(G, gmin, v, src, nudge):
    """(delivered by the voltage sources, by the nudging sources, dissipated) in W, (B,),
    branch by branch: output node r, source s, conductance G[r, s]."""
    B = len(v)
    p_src, p_diss = np.zeros(B), gmin * (v ** 2).sum(1)
    for r in range(G.shape[0]):
        for s in range(G.shape[1]):
            i = G[r, s] * (src[:, s] - v[:, r])           # from source s into node r
            p_src += src[:, s] * i
            p_diss += i * (src[:, s] - v[:, r])
    p_nudge = nudge[:, 0] * v[:, 0] - nudge[:, 0] * v[:, 1]   # +I into o⁺, −I into o⁻
    return p_src, p_nudge, p_diss


def _hand_phase(phase, G, gmin, C, src0, src1, nudge0, nudge1, rise):
    """Cumulative (sources, nudge, dissipated) and stored energy of a midpoint transient,
    from its kept voltages: each step's power at the midpoint state and time."""
    res = phase.result
    V, t = res.voltages, res.times
    out = np.zeros((3, len(t), V.shape[1]))
    for k in range(1, len(t)):
        tm = 0.5 * (t[k] + t[k - 1])
        f = min(tm / rise, 1.0)
        p = _hand_powers(G, gmin, 0.5 * (V[k] + V[k - 1]), src0 + f * (src1 - src0), nudge0 + f * (nudge1 - nudge0))
        out[:, k] = out[:, k - 1] + np.array(p) * (t[k] - t[k - 1])
    stored = 0.5 * (C * V ** 2).sum(-1) - 0.5 * (C * V[:1] ** 2).sum(-1)      # (T, B)
    return out, stored


def test_training_step_energy_matches_a_hand_computation_and_the_books_close():
    m = block(features=2, hidden=(), outputs=1, g=(1e-6, 1e-4))
    m.compile(loss="mse", optimizer="sgd", beta=1e-6)
    c, eng, G = m.circuit, m.get_engine("native"), m.conductances
    assert c.n_free == 2 and not c.nonlinear and len(c.amp_in) == 0
    C = node_capacitance(c)
    rise = 2e-11
    tr = NativeTransient(eng, C, TransientSpec(duration=1e-9, dt=5e-12, rise=rise, method="midpoint"))
    x, y = inputs(3, 2, scale=1.0, seed=3), np.array([0, 0, 0])
    pulse, sh = PulseSpec(2e-13, 1e-8), SampleHold(energy_j=None)     # sampling = charging C from V_DD
    st = training_step(tr, c, G, C, x, y, m.loss, 1e-6, pulse=pulse, sample_hold=sh, keep_voltages=True)
    src1 = c.source_voltages(x)
    src0 = c.source_voltages(np.zeros_like(x))
    current = -1e-6 * m.loss(c.outputs(eng.solve(G, src=src1).v), y)[1]
    starts = {"free": (src0, 0 * current, 0 * current), "nudged+": (src1, 0 * current, current),
              "nudged-": (src1, 0 * current, -current)}
    Gm = np.asarray(G[0], float)
    total = 0.0
    for name, phase in st.phases.items():
        s0, n0, n1 = starts[name]
        (src_e, nud_e, diss_e), stored = _hand_phase(phase, Gm, c.gmin, C, s0, src1, n0, n1, rise)
        cum = phase.cumulative
        assert np.allclose(cum["sources"], src_e, rtol=1e-9, atol=0)
        assert np.allclose(cum["nudge"], nud_e, rtol=1e-9, atol=1e-30)
        drawn = src_e + nud_e                    # the books close at every time point of every phase
        assert np.all(np.abs(drawn - (diss_e + stored)) <= 1e-6 * np.abs(drawn[-1]))
        assert np.allclose(cum["dissipated"], diss_e, rtol=1e-9, atol=0)
        assert np.allclose(cum["stored"], stored, rtol=1e-9, atol=1e-30)
        k = np.searchsorted(phase.result.times, phase.settle_time)
        assert phase.settled.all() and np.allclose(phase.energy, (src_e + nud_e)[k, np.arange(3)], rtol=1e-12, atol=0)
        total = total + phase.energy
    # the step: phases, then 3 phases × 2 nodes sampled and held to the end of programming, then the pulses
    ts = [p.settle_time for p in st.phases.values()]
    # programming, row by row: a SET pass if any device of the row goes up, a RESET pass if any goes down
    Vp, Vm = st.phases["nudged+"].v_dc, st.phases["nudged-"].v_dc
    prog_time = np.zeros(3)
    for i in range(3):
        for r in range(2):
            g = (Vp[i, r] - src1[i]) ** 2 - (Vm[i, r] - src1[i]) ** 2       # ∝ ∂C/∂G[r, :] (positive factor)
            prog_time[i] += (int((g < 0).any()) + int((g > 0).any())) * 1e-8
    T = ts[0] + ts[1] + ts[2] + 3 * sh.acquire_s + prog_time
    held = (T - ts[0] - sh.acquire_s) + (T - ts[0] - ts[1] - 2 * sh.acquire_s) + (T - ts[0] - ts[1] - ts[2] - 3 * sh.acquire_s)
    sh_energy = 6 * sh.capacitance * sh.supply_v ** 2 + 2 * sh.bias_a * sh.supply_v * held
    n_pulses = 2 * Gm.shape[1]        # one per device: no gradient is exactly zero here
    assert np.all(st.programming["pulses"] == n_pulses)
    assert np.allclose(st.time, T, rtol=1e-12, atol=0)
    assert np.allclose(st.energy, total + sh_energy + n_pulses * 2e-13, rtol=1e-12, atol=0)


def test_pulse_energy_is_the_pulse_count_times_the_energy_per_pulse():
    rng = np.random.default_rng(4)
    counts = [rng.integers(-3, 4, (5, 7)), rng.integers(-2, 3, (4, 6))]
    pulse = PulseSpec(3e-13, 2e-8)
    pulses, slots = 0, 0
    for n in counts:
        for row in n.tolist():
            pulses += sum(abs(k) for k in row)
            slots += max([k for k in row if k > 0], default=0) + max([-k for k in row if k < 0], default=0)
    got = programming_cost(counts, pulse)
    at_once = programming_cost(counts, pulse, all_rows_at_once=True)
    assert at_once["pulses"] == pulses and at_once["energy"] == got["energy"]
    assert at_once["time"] == pytest.approx(2e-8 * (max(int(n.max()) for n in counts) + max(int(-n.min()) for n in counts)))
    assert got["pulses"] == pulses
    assert got["energy"] == pytest.approx(pulses * 3e-13, rel=1e-12)
    assert got["time"] == pytest.approx(slots * 2e-8, rel=1e-12)
    one = one_pulse_per_device([np.array([[0.5, -1.0, 0.0]])])
    assert one[0].tolist() == [[-1, 1, 0]]


@pytest.mark.parametrize("energy, duration, key", [(0.0, 1e-8, "pulse_energy"), (1e-13, -1.0, "pulse_duration"),
                                                   (float("nan"), 1e-8, "pulse_energy")])
def test_bad_pulse_figures_name_the_key(energy, duration, key):
    with pytest.raises(AnalogInputError, match=key):
        PulseSpec(energy, duration)


def test_cut_short_phases_tend_to_ep_and_short_ones_do_not():
    from analog.cep import cosine
    from analog.ep import ep_gradients
    from analog.training_energy import cut_short_gradients
    m = block(features=3, hidden=(4,), outputs=2, g=(1e-6, 1e-4))
    m.compile(loss="mse", optimizer="sgd", beta=1e-6)
    c, eng, G = m.circuit, m.get_engine("native"), m.conductances
    C = node_capacitance(c)
    x, y = inputs(6, 3, scale=1.0, seed=7), np.arange(6) % 2
    ep = ep_gradients(eng, c, G, x, y, m.loss, 1e-6, "symmetric").grads
    long = cut_short_gradients(eng, C, G, x, y, m.loss, 1e-6, 3e-9, 3e-9, steps=60)
    short = cut_short_gradients(eng, C, G, x, y, m.loss, 1e-6, 1e-12, 1e-12, steps=5)
    assert long.used.all() and cosine(long.grads, ep) > 1 - 1e-6
    assert np.allclose(long.y, c.outputs(eng.solve(G, x).v), atol=1e-7, rtol=0)
    assert cosine(short.grads, ep) < 0.99


def _fit_once(phases=None):
    m = block(features=3, hidden=(4,), outputs=2, g=(1e-6, 1e-4))
    m.compile(loss="mse", optimizer="sgd", beta=1e-6, phases=phases)
    x, y = inputs(6, 3, scale=1.0, seed=7), np.arange(6) % 2
    m.fit(x, y, epochs=1, batch_size=6, verbose=0)
    return m, x, y


def test_fit_with_long_cut_phases_steps_as_ep_and_short_ones_do_not():
    from analog.training_energy import PhaseCut
    ep, x, y = _fit_once()
    long, _, _ = _fit_once(PhaseCut(3e-9, 3e-9, 60))
    short, _, _ = _fit_once(PhaseCut(1e-12, 1e-12, 5))
    start = block(features=3, hidden=(4,), outputs=2, g=(1e-6, 1e-4)).conductances
    step = [a - s for a, s in zip(ep.conductances, start)]
    dev = lambda m: max(np.abs(a - s - d).max() / np.abs(d).max() for a, s, d in zip(m.conductances, start, step))
    assert dev(long) < 1e-3 and dev(short) > 1e-2
    # the logged loss is the free operating point's, whatever the phases
    assert long.history.history["loss"] == pytest.approx(ep.history.history["loss"], rel=1e-12)
    # a long free phase read at its end is the operating point's output
    assert np.allclose(PhaseCut(3e-9, 3e-9, 60).predict(ep, x), ep.predict(x), atol=1e-7, rtol=0)


@pytest.mark.parametrize("kw, key", [({"t_free": 0.0, "t_nudged": 1e-9}, "t_free"),
                                     ({"t_free": 1e-9, "t_nudged": float("nan")}, "t_nudged"),
                                     ({"t_free": 1e-9, "t_nudged": 1e-9, "steps": 0}, "steps")])
def test_bad_phase_cuts_name_the_key(kw, key):
    from analog.training_energy import PhaseCut
    with pytest.raises(AnalogInputError, match=key):
        PhaseCut(**kw)


def test_cut_phases_replace_ep_only():
    from analog.training_energy import PhaseCut
    m = block(features=3, hidden=(4,), outputs=2)
    with pytest.raises(ValueError, match="phases replace the EP estimate"):
        m.compile(loss="mse", optimizer="sgd", algorithm="c-ep", phases=PhaseCut(1e-9, 1e-9))
