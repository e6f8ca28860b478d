"""ngspice engine: netlists, standalone ngspice -b, loaded vs rebuild, convergence failures,
conductance updates, memory."""
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import analog.layers as L
from analog.devices import Device, ShockleyDiode
from analog.model import AnalogModel
from analog.netlist import NetlistPlan, _source_row, build_circuit, pyspice_netlist, to_netlist
from analog.native import NativeEngine
from analog.ngspice import NgspiceEngine, ngspice_version
from analog.solution import ConvergenceError
from tests.analog_circuits import DEVICES, block, inputs

pytestmark = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")


def _elements(text: str) -> dict[str, list[str]]:
    """Element name (lowercase) → its tokens, without PySpice's/our optional 'dc' keyword."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "*." or line.lower().startswith(".title"):
            continue
        tok = [t for t in line.split() if t.lower() != "dc"]
        out[tok[0].lower()] = [t.lower() for t in tok[1:]]
    return out


def _same_value(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


@pytest.fixture(scope="module")
def small():
    m = block(features=3, hidden=(4,), outputs=2, gain=3.0, vref=0.6, device=DEVICES["shockley_rs"])
    return m


def test_netlist_elements(small):
    c, G = small.circuit, small.conductances
    x = inputs(1, 3)[0]
    # the workers' hand-written netlist (loaded once per process) ...
    text = NetlistPlan(c).text(G, _source_row(c, x, None), [1e-6, -2e-6])
    el = _elements(text)
    count = lambda prefix: sum(1 for k in el if re.fullmatch(prefix, k))
    assert count(r"v_.*") == c.n_sources
    assert "vvref" in el and el["vvref"] == ["vref", "0", "0.6"]
    assert count(r"r\d+_\d+_\d+") == sum(g.size for g in G)
    assert count(r"rgmin\d+") == c.n_free
    assert count(r"e\d+") == count(r"vs\d+") == count(r"f\d+") == len(c.amp_in)
    assert count(r"ip\d+") == count(r"im\d+") == c.n_outputs
    assert count(r"d\d+_\d+") == sum(len(b.node_terms) for b in c.nonlinear)
    assert text.count(".model") == 1 and ".op" in text and text.rstrip().endswith(".end")
    assert "reltol=1e-12" in text
    # resistor value and orientation, amplifier wiring, nudging signs
    plan = NetlistPlan(c)
    b0 = c.dense[0]
    assert el["r0_1_2"] == [plan.nodes[b0.out_terms[1]], plan.nodes[b0.in_terms[2]], repr(float(1 / G[0][1, 2]))]
    k_in, out = plan.nodes[c.amp_in[0]], plan.nodes[c.n_free + c.n_sources]
    assert el["e0"] == [out + "_int", "vref", k_in, "vref", "3.0"]
    assert el["vs0"] == [out + "_int", out, "0"]
    assert el["f0"] == [k_in, "0", "vs0", repr(1 / 3.0)]
    assert el["ip1"] == ["0", plan.nodes[c.out_plus[1]], "-2e-06"]
    assert el["im1"] == ["0", plan.nodes[c.out_minus[1]], "2e-06"]
    # diodes: 'up' anode at the node, 'down' cathode at the node
    for b, blk in enumerate(c.nonlinear):
        node, ref = plan.nodes[blk.node_terms[0]], plan.nodes[blk.ref_term]
        assert el[f"d{b}_0"][:2] == ([node, ref] if blk.sign > 0 else [ref, node])
    # ... and the exported netlist, built with PySpice, hold exactly the same elements
    exported = to_netlist(c, G, x, nudge_row=[1e-6, -2e-6])
    assert ".op" in exported and exported.rstrip().endswith(".end") and "reltol=1e-12" in exported
    py = _elements(exported)
    assert py.keys() == el.keys()
    for name, tok in el.items():
        assert len(tok) == len(py[name]) and all(_same_value(a, b) for a, b in zip(tok, py[name])), name


def _parse_batch_output(out: str) -> dict[str, float]:
    values, in_table = {}, False
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("Node") and "Voltage" in s:
            in_table = True
            continue
        if in_table:
            if s.startswith("Source") or s.startswith("Source\tCurrent"):
                break
            parts = s.split()
            if len(parts) == 2 and not parts[0].startswith("-"):
                values[parts[0]] = float(parts[1])
    return values


def test_standalone_ngspice_batch_agrees_with_engine(small, tmp_path):
    c, G = small.circuit, small.conductances
    x = inputs(3, 3, seed=5)
    nudge = np.array([[0.0, 0.0], [2e-6, -1e-6], [-3e-6, 5e-6]])
    plan = NetlistPlan(c)
    with NgspiceEngine(c, processes=1) as eng:
        sol = eng.solve(G, x, nudge=nudge)
    assert sol.converged.all()
    for i in range(len(x)):
        path = tmp_path / f"s{i}.cir"
        path.write_text(to_netlist(c, G, x[i], nudge[i]))
        res = subprocess.run(["ngspice", "-b", str(path)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        printed = _parse_batch_output(res.stdout)
        got = np.array([printed[n] for n in plan.free_nodes])
        # ngspice -b prints 7 significant digits: ≤ 5e-7 V rounding on ~1 V
        np.testing.assert_allclose(got, sol.v[i], rtol=0, atol=1e-6)


def test_loaded_and_rebuild_modes_agree(small):
    c, G = small.circuit, small.conductances
    x = inputs(6, 3, seed=2)
    nudge = np.random.default_rng(0).normal(0, 3e-6, (6, c.n_outputs))
    with NgspiceEngine(c, processes=2, mode="loaded") as a, NgspiceEngine(c, processes=2, mode="rebuild") as b:
        sa, sb = a.solve(G, x, nudge=nudge), b.solve(G, x, nudge=nudge)
    assert sa.converged.all() and sb.converged.all()
    np.testing.assert_allclose(sa.v, sb.v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sa.source_currents, sb.source_currents, rtol=1e-9, atol=1e-18)
    assert np.all(np.isfinite(sa.power)) and np.all(sa.power > 0)
    assert sa.info["failures"] == [] and sa.info["mode"] == "loaded"


@dataclass(frozen=True)
class StepDevice(Device):
    """Test-only element with no operating point for small drives: a current source of
    ±I0 switching on the sign of its voltage. Across a Thevenin source (V_th, R_th) KCL
    has a solution only when |V_th| > R_th·I0; otherwise Newton and all of ngspice's
    gmin/source stepping fail."""

    I0: float = 1e-5

    def current(self, u):
        u = np.asarray(u, dtype=float)
        return np.where(u > 0, self.I0, -self.I0), np.zeros_like(u)

    def spice_lines(self, name, anode, cathode):
        return [f"B{name} {anode} {cathode} I={{V({anode},{cathode}) > 0 ? {self.I0!r} : {-self.I0!r}}}"]


def test_nonconverging_samples_are_reported_by_index():
    x = L.InputVoltage(1)
    d = L.Dense(2, g_min=1e-5, g_max=1e-3)
    h = L.DiodeLayer("up", 0.0, StepDevice(1e-5))(d(x))
    m = AnalogModel(x, L.CurrentLayer()(h))
    d.set_conductances([[2e-4, 1e-4], [2e-4, 1e-4]])   # |g+ − g−|·|x| > I0  ⇔  |x| > 0.1 V
    xs = np.array([[1.0], [0.01], [2.0], [-0.05], [-1.5], [0.02]])
    with NgspiceEngine(m.circuit, processes=1) as eng:
        sol = eng.solve(m.conductances, xs)
    assert sol.info["failures"] == [1, 3, 5]
    assert list(sol.converged) == [True, False, True, False, True, False]
    assert np.isnan(sol.v[[1, 3, 5]]).all() and np.isnan(sol.source_currents[[1, 3, 5]]).all()
    assert np.isnan(sol.power[[1, 3, 5]]).all()
    # the converged ones are right: V = V_th − R_th·I0 (g = 3e-4 S total, V_th = x/3)
    expect = xs[[0, 2, 4], 0] / 3 - np.sign(xs[[0, 2, 4], 0]) * 1e-5 / 3e-4
    np.testing.assert_allclose(sol.v[[0, 2, 4], 0], expect, atol=1e-9)
    assert "aborted" in sol.info["messages"][1]


def test_sweep_resumes_after_each_sample_it_cannot_solve():
    """The loaded engine solves a task's samples in one dc sweep; a sample the sweep cannot
    solve ends it, is solved alone by op (and fails there too), and the sweep resumes after
    it: three failures at 1, 3, 5 of 7 samples give three op fallbacks and more than one
    sweep, and the good samples equal the ones solved one per task. The sweep visits samples
    in nearest-neighbour order (binding.visit_order, a permutation even with absurd values)
    and returns them in the given order."""
    from analog.ngspice.binding import visit_order
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 40):
        rows = rng.normal(size=(n, 4))
        if n == 40:
            rows[[3, 7]] = [[1e300] * 4, [-1e300, 1e300, 0, 0]]
        assert sorted(visit_order(rows)) == list(range(n))
    x = L.InputVoltage(1)
    d = L.Dense(2, g_min=1e-5, g_max=1e-3)
    h = L.DiodeLayer("up", 0.0, StepDevice(1e-5))(d(x))
    m = AnalogModel(x, L.CurrentLayer()(h))
    d.set_conductances([[2e-4, 1e-4], [2e-4, 1e-4]])
    xs = np.array([[1.0], [0.01], [2.0], [-0.05], [-1.5], [0.02], [0.7]])
    with NgspiceEngine(m.circuit, processes=1) as eng:
        sol = eng.solve(m.conductances, xs)
        st = eng.last_worker_info[0]["stats"]
        one = [eng.solve(m.conductances, xs[i: i + 1]) for i in (0, 2, 4, 6)]
    assert sol.info["failures"] == [1, 3, 5] and (st["op_fallbacks"], st["ops"]) == (3, 7) and st["sweeps"] >= 2
    np.testing.assert_allclose(sol.v[[0, 2, 4, 6]], np.concatenate([o.v for o in one]), rtol=0, atol=1e-12)


def test_conductance_update_by_alter_equals_fresh_load(small):
    c, G1 = small.circuit, small.conductances
    rng = np.random.default_rng(3)
    G2 = [g * rng.uniform(0.5, 1.5, g.shape) for g in G1]
    x = inputs(4, 3, seed=9)
    nudge = np.full((4, c.n_outputs), 2e-6)
    with NgspiceEngine(c, processes=1, g_update="alter") as eng:
        before = eng.solve(G1, x)
        after = eng.solve(G2, x, nudge=nudge)
        stats = eng.last_worker_info[0]["stats"]
    assert stats["loads"] == 1 and stats["resistor_alters"] == sum(g.size for g in G1)
    with NgspiceEngine(c, processes=1) as fresh:
        ref = fresh.solve(G2, x, nudge=nudge)
    assert np.abs(before.v - ref.v).max() > 1e-4          # the update did change the result
    np.testing.assert_allclose(after.v, ref.v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(after.source_currents, ref.source_currents, rtol=1e-9, atol=1e-18)


def test_input_validation_and_version(small):
    assert ngspice_version().startswith("ngspice-")
    eng = NgspiceEngine(small.circuit, processes=1)
    with pytest.raises(ValueError):
        eng.solve(small.conductances, np.zeros((2, 5)))
    with pytest.raises(ValueError):
        eng.solve(small.conductances, np.zeros((2, 3)), nudge=np.zeros((2, 7)))
    with pytest.raises(ValueError):
        eng.solve([g[:, :-1] for g in small.conductances], np.zeros((2, 3)))
    with pytest.raises(ValueError):
        NgspiceEngine(small.circuit, mode="fast")
    eng.close()


@pytest.mark.slow
def test_memory_stays_flat_over_10000_operating_points():
    m = block(features=3, hidden=(4,), outputs=2, device=ShockleyDiode(RS=10.0))
    c, G = m.circuit, m.conductances
    x = inputs(10000, 3, seed=11)
    nudge = np.random.default_rng(1).normal(0, 1e-6, (10000, c.n_outputs))
    with NgspiceEngine(c, processes=1, chunk=500) as eng:
        eng.solve(G, x[:500], nudge=nudge[:500])
        rss0 = eng.last_worker_info[0]["rss_kb"]
        sol = eng.solve(G, x, nudge=nudge)
        rss1 = max(info["rss_kb"] for info in eng.last_worker_info)
        ops = eng.last_worker_info[-1]["stats"]["ops"]
    assert sol.converged.all() and ops >= 10500
    assert (rss1 - rss0) / 1024 < 30, f"worker RSS grew {(rss1 - rss0) / 1024:.1f} MB over 10,000 operating points"


class _CardWithUnknownParameter(ShockleyDiode):
    """A Shockley diode whose card carries a parameter ngspice's diode model does not have."""

    def spice_models(self):
        return [f".model {self.model_name} D(IS={self.IS!r} N={self.N!r} FOO=3)"]


class _CardWithBadValue(ShockleyDiode):
    def spice_models(self):
        return [f".model {self.model_name} D(IS=-abc)"]


@pytest.mark.parametrize("device_cls, complaint", [(_CardWithUnknownParameter, "unrecognized parameter"),
                                                   (_CardWithBadValue, "")])
def test_rejected_device_card_names_the_layer_before_any_simulation(device_cls, complaint):
    from analog.builders import build_dense_network
    from analog.spice_check import DeviceCardError
    model = build_dense_network(3, 2, hidden=(4,), device=device_cls(IS=1e-12))
    with pytest.raises(DeviceCardError, match=r"layer 'diode_up1'.*ngspice rejects the device card") as err:
        model.get_engine("ngspice")
    assert complaint in str(err.value).lower()
    with pytest.raises(DeviceCardError, match="diode_up1"):
        model.to_netlist(np.zeros((1, 3)))
    assert model._engines == {}      # no engine (and no worker pool) was created


def test_bad_options_are_named_before_any_worker_starts(small):
    with pytest.raises(ValueError, match=r"options\.pivrel='small'"):
        NgspiceEngine(small.circuit, options={"pivrel": "small"})
    with pytest.raises(ValueError, match=r"options key 'piv rel'"):
        NgspiceEngine(small.circuit, options={"piv rel": 1e-5})
    with pytest.raises(ValueError, match=r"options\.reltol=nan"):
        NgspiceEngine(small.circuit, options={"reltol": float("nan")})


def _xor_data(n=16, seed=4):
    x = inputs(n, 2, seed=seed)
    return x, (x[:, 0] * x[:, 1] > 0).astype(int)


def _train(engine, engine_options=None):
    m = block(features=2, hidden=(4,), outputs=2, gain=3.0, seed=0)
    m.compile(loss="mse", optimizer="sgd", beta=1e-6, engine=engine, engine_options=engine_options)
    x, y = _xor_data()
    try:
        hist = m.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=1)
        netlist = m.get_engine(engine, **(engine_options or {})).plan.text(m.conductances, np.zeros(
            m.circuit.n_sources)) if engine == "ngspice" else ""
    finally:
        m.close()
    return hist.history, m.conductances, netlist


def test_training_on_ngspice_follows_the_native_loss_curve():
    """2 epochs, 16 samples, batch 8 on an xor-sized block, with nested engine options (the
    dict used to break the engine cache key). The engines agree to ~1e-13 V, so the EP
    gradients, updates and per-epoch losses agree to rounding: measured 5e-15 relative on the
    losses and 3e-14 on the conductances; asserted 1e-9 and 1e-8."""
    start = [g.copy() for g in block(features=2, hidden=(4,), outputs=2, gain=3.0, seed=0).conductances]
    native, G_native, _ = _train("native")
    spice, G_spice, netlist = _train("ngspice", {"processes": 2, "options": {"pivrel": 1e-6, "reltol": 1e-10}})
    assert "pivrel=1e-06" in netlist and "reltol=1e-10" in netlist          # the options reached ngspice
    assert native["nonconverged"] == spice["nonconverged"] == [0, 0]
    np.testing.assert_allclose(spice["loss"], native["loss"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(spice["accuracy"], native["accuracy"], rtol=0, atol=0)
    for g0, gn, gs in zip(start, G_native, G_spice):
        assert np.abs(gn - g0).max() > 1e-3 * g0.max()                        # training moved the weights
        np.testing.assert_allclose(gs, gn, rtol=1e-8, atol=0)
    assert native["loss"][1] != native["loss"][0]


def test_engine_cache_takes_nested_options():
    m = block(features=3, hidden=(4,), outputs=2, gain=3.0, vref=0.6, device=DEVICES["shockley_rs"])
    try:
        a = m.get_engine("ngspice", processes=1, options={"pivrel": 1e-5})
        assert m.get_engine("ngspice", processes=1, options={"pivrel": 1e-5}) is a
        b = m.get_engine("ngspice", processes=1, options={"pivrel": 1e-6})
        assert b is not a and b.options == {"pivrel": 1e-6}
    finally:
        m.close()


def test_nonconvergence_absurd_sources_reported_by_index_others_unaffected():
    """Real devices (Shockley diodes, amplifiers): inputs of 1e300 V and 1e150 V make ngspice
    give up after its gmin, source and transient-op stepping ("op simulation(s) aborted"),
    1e30 V it still solves. (ngspice's itl1 cannot force a failure: it runs at least 100 DC
    iterations whatever itl1 says — measured with `.options acct`: 14 iterations at itl1=3.)
    Two workers, three tasks: failures in two of them; the good samples must equal a native
    solve of them alone, and the workers must keep working afterwards."""
    m = block(features=2, hidden=(4,), outputs=2, gain=3.0, seed=0)
    c, G = m.circuit, m.conductances
    x = np.array([[0.5, -0.2], [1e300, -1e300], [1.0, 0.3], [1e150, 1e150], [-1.0, 2.0]])
    good, bad = [0, 2, 4], [1, 3]
    ref = NativeEngine(c).solve(G, x[good])
    assert ref.converged.all()
    with NgspiceEngine(c, processes=2, chunk=2) as eng:
        sol = eng.solve(G, x)
        again = eng.solve(G, x[good], nudge=np.full((3, c.n_outputs), 1e-6))
    assert list(sol.converged) == [True, False, True, False, True]
    assert sol.info["failures"] == bad and all("aborted" in sol.info["messages"][i] for i in bad)
    for arr in (sol.v, sol.source_currents):
        assert np.isnan(arr[bad]).all() and np.isfinite(arr[good]).all()
    assert np.isnan(sol.power[bad]).all() and np.all(sol.power[good] > 0)
    np.testing.assert_allclose(sol.v[good], ref.v, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sol.source_currents[good], ref.source_currents, rtol=1e-6, atol=1e-15)
    assert again.converged.all()
    with pytest.raises(ConvergenceError, match=r"ngspice: 2 sample\(s\) did not converge \(indices 1, 3\)") as err:
        sol.raise_on_failure("ngspice")
    assert err.value.indices == bad
    assert sol.v[good].shape == (3, c.n_free) and again.raise_on_failure("ngspice") is again


_SCRIPT = """\
import numpy as np
from analog.builders import build_dense_network

def main():
    model = build_dense_network(2, 2, hidden=(3,))
    sol = model.solve(np.zeros((4, 2)), engine="ngspice")
    print("converged", bool(sol.converged.all()))
    model.close()
"""


@pytest.mark.parametrize("guarded", [True, False])
def test_script_without_main_guard_fails_clearly_instead_of_hanging(tmp_path, guarded):
    """The workers re-import the main module ('forkserver'): a script that solves at module
    level used to hang forever while the pool replaced dying workers. Now it ends with an
    error naming the fix; with the guard it runs."""
    body = 'if __name__ == "__main__":\n    main()\n' if guarded else "main()\n"
    script = tmp_path / "user_script.py"
    script.write_text(_SCRIPT + body)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, str(script)], timeout=60, capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    if guarded:
        assert res.returncode == 0, res.stderr[-2000:]
        assert res.stdout.strip() == "converged True"
    else:
        assert res.returncode != 0
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("analog.ngspice.pool.WorkerExitError: ngspice worker processes keep exiting")
        assert 'if __name__ == "__main__":' in last and "converged" not in res.stdout


def test_worker_killed_mid_solve_raises_instead_of_hanging(small):
    """multiprocessing.Pool replaces a worker that dies, but the task it held is lost and
    map() waits forever (measured on the old engine: still waiting after 30 s). The engine
    raises WorkerExitError, closes the pool, and the next solve starts a fresh one."""
    import signal
    import threading
    import time

    from analog.ngspice import WorkerExitError
    c, G = small.circuit, small.conductances
    x = inputs(20000, 3, seed=1)                # ~5 s on this block: the kill lands mid-solve
    with NgspiceEngine(c, processes=2) as eng:
        eng.solve(G, x[:2])
        pid = eng.last_worker_info[0]["pid"]
        timer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
        timer.start()
        t0 = time.perf_counter()
        with pytest.raises(WorkerExitError, match="3 started for 2 slots.*crashed or was killed"):
            eng.solve(G, x)
        timer.join()
        assert time.perf_counter() - t0 < 20 and eng._pool is None
        sol = eng.solve(G, x[:6])
        assert sol.converged.all() and pid not in {w["pid"] for w in eng.last_worker_info}


def test_training_and_scores_skip_samples_ngspice_cannot_solve():
    """A batch with two samples ngspice aborts on (inputs of 1e300 V) trains exactly like the
    native engine on the batch without them (EP averages over the samples it could use), and
    `scores` counts them as wrong in accuracy and leaves them out of the loss."""
    x, y = _xor_data(8, seed=6)
    bad = np.array([[1e300, -1e300], [1e150, 1e150]])
    x_all, y_all = np.concatenate([x[:3], bad[:1], x[3:], bad[1:]]), np.concatenate([y[:3], [0], y[3:], [1]])

    def trained(engine, xs, ys):
        m = block(features=2, hidden=(4,), outputs=2, gain=3.0, seed=0)
        m.compile(loss="mse", optimizer="sgd", beta=1e-6, engine=engine,
                  engine_options={"processes": 1} if engine == "ngspice" else None)
        try:
            hist = m.fit(xs, ys, epochs=2, batch_size=len(xs), shuffle=False, verbose=0)
            scores = m.scores(x_all, y_all, engine=engine) if engine == "ngspice" else None
        finally:
            m.close()
        return m, hist.history, scores

    ref, ref_hist, _ = trained("native", x, y)
    m, hist, scores = trained("ngspice", x_all, y_all)
    assert hist["nonconverged"] == [2, 2] and ref_hist["nonconverged"] == [0, 0]
    np.testing.assert_allclose(hist["loss"], ref_hist["loss"], rtol=1e-9, atol=0)
    for gs, gn in zip(m.conductances, ref.conductances):
        np.testing.assert_allclose(gs, gn, rtol=1e-8, atol=0)
    # scores on ngspice vs the native model's outputs on the good samples, computed here
    out = ref.circuit.outputs(NativeEngine(ref.circuit).solve(ref.conductances, x).v)
    cost = ref.loss(out, y)[0]
    assert scores["nonconverged"] == 2 and scores["samples"] == 10
    assert scores["accuracy"] == pytest.approx((out.argmax(1) == y).sum() / 10, abs=0)
    assert scores["loss"] == pytest.approx(cost.mean(), rel=1e-9)
