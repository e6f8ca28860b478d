"""Time and energy of one EP training step on the chip (docs/transient.md, "A training step").

The step, per sample:
1. free phase: the inputs ramp in from rest (every input at V_ref) and the circuit settles;
2. nudged phase(s): the inputs held, the nudging currents −β·∂C/∂y (computed from the free
   outputs) ramp in over `rise` and are held; with symmetric nudging a +β and a −β phase,
   each from the free state;
3. sample-and-hold: after each phase every free node's voltage is sampled onto a hold
   capacitor (the drop across each device is the difference of two held node voltages) and
   held until the conductances are written;
4. programming: each device takes its pulses (one pulse per device whose update is not zero,
   the sign choosing SET or RESET, in the scheme of the seed notes; or any count), a row at a
   time with every column of the row in parallel, SET and RESET in separate passes.

A phase settles when every free node stays within `rel_tol` of the nudge's displacement
max_n |v⁺_n − v⁰_n| of its DC operating point (gradient grade: EP reads differences of that
size). Its energy, up to that time, is what the voltage sources, the nudging current sources
and the amplifiers' supply model deliver (analog/inference_energy.py); the probe also keeps
dissipation and stored energy, so the books can be checked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .energy_figures import FIGURES, ConverterCost, converter_cost_of
from .errors import AnalogInputError
from .inference_energy import AmplifierSupply, EnergyProbe, stored_energy


@dataclass(frozen=True)
class PulseSpec:
    """Energy (J) and duration (s) of one programming pulse: SET (a conductance increase) and,
    when given, RESET figures of their own (else RESET = SET). `keys` name the options the
    figures came from, so an error names what the user set."""
    energy_j: float
    duration_s: float
    keys: tuple = ("pulse_energy", "pulse_duration")
    reset_energy_j: float | None = None
    reset_duration_s: float | None = None

    def __post_init__(self):
        values = (self.energy_j, self.duration_s, self.reset_energy_j, self.reset_duration_s)
        keys = tuple(self.keys) + tuple(f"reset_{k}" for k in self.keys)
        for key, value in zip(keys, values):
            if value is None and key.startswith("reset_"):
                continue
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise AnalogInputError(f"{key}={value!r} must be a finite number > 0")

    @property
    def reset(self) -> tuple[float, float]:
        """(energy, duration) of a RESET pulse."""
        return (self.energy_j if self.reset_energy_j is None else self.reset_energy_j,
                self.duration_s if self.reset_duration_s is None else self.reset_duration_s)


def device_pulse(device: str) -> PulseSpec:
    """The sourced pulse figures of a device kind ('rram' or 'pcm'; analog/energy_figures.py)."""
    F = FIGURES
    if device == "rram":
        return PulseSpec(F["rram_pulse_energy"].value, F["rram_pulse_duration"].value)
    if device == "pcm":
        return PulseSpec(F["pcm_set_energy"].value, F["pcm_set_duration"].value,
                         reset_energy_j=F["pcm_reset_energy"].value, reset_duration_s=F["pcm_reset_duration"].value)
    raise AnalogInputError(f"device={device!r} has no pulse figures; allowed: rram, pcm")


@dataclass(frozen=True)
class SampleHold:
    """A sample-and-hold per free node and phase: each sample costs `energy_j` (default: the
    published figure FIGURES["sample_hold_energy"]; None: charging `capacitance` (F) from the
    supply, C·V_DD² drawn, ½ stored and ½ lost in the switch), takes `acquire_s`, and its
    buffer draws `bias_a` from V_DD while it holds."""
    capacitance: float = 50e-15
    acquire_s: float = FIGURES["sample_hold_acquire"].value
    bias_a: float = FIGURES["sample_hold_bias"].value
    supply_v: float = FIGURES["amplifier_supply"].value
    energy_j: float | None = FIGURES["sample_hold_energy"].value

    def sample_energy(self) -> float:
        return self.capacitance * self.supply_v ** 2 if self.energy_j is None else self.energy_j

    def hold_power(self) -> float:
        return self.bias_a * self.supply_v


def one_pulse_per_device(grads) -> list[np.ndarray]:
    """Signed pulse counts of the seed notes' scheme: one pulse against the gradient's sign
    on every device whose gradient is not zero."""
    return [-np.sign(np.asarray(g, float)).astype(np.int64) for g in grads]


def programming_cost(counts, pulse: PulseSpec, all_rows_at_once: bool = False) -> dict:
    """Pulses, energy (J) and time (s) of writing signed pulse counts (one array per crossbar,
    rows × columns; positive = SET): every SET pulse costs pulse.energy_j, every RESET pulse
    pulse.reset[0]; rows are written one after the other, each row's SET pass lasting its
    largest positive count times the SET duration and its RESET pass its largest negative count
    times the RESET duration (all_rows_at_once: every row of every crossbar in the same SET
    pass and the same RESET pass)."""
    e_reset, t_reset = pulse.reset
    n_set, n_reset, t_rows, up, down = 0, 0, 0.0, 0, 0
    for n in counts:
        n = np.atleast_2d(np.asarray(n, np.int64))
        n_set, n_reset = n_set + int(np.clip(n, 0, None).sum()), n_reset + int(np.clip(-n, 0, None).sum())
        row_up, row_down = np.clip(n, 0, None).max(axis=1), np.clip(-n, 0, None).max(axis=1)
        t_rows += int(row_up.sum()) * pulse.duration_s + int(row_down.sum()) * t_reset
        up, down = max(up, int(row_up.max())), max(down, int(row_down.max()))
    time = up * pulse.duration_s + down * t_reset if all_rows_at_once else t_rows
    return dict(pulses=n_set + n_reset, energy=n_set * pulse.energy_j + n_reset * e_reset, time=time)


@dataclass
class Phase:
    """One phase's transient: per sample settle_time (s; NaN if not settled), settled, energy
    (J drawn up to settling), and the cumulative terms and voltages for checks."""
    settle_time: np.ndarray
    settled: np.ndarray
    energy: np.ndarray
    v_end: np.ndarray
    v_dc: np.ndarray
    cumulative: dict
    result: object


def run_phase(transient, G_list, src, C, *, supply: AmplifierSupply, tol: np.ndarray, nudge=None,
              nudge_start=None, v_start=None, src_start=None, keep_voltages=False) -> Phase:
    """One phase on a NativeTransient: from v_start (or the operating point at src_start) with
    the sources at src and the nudge ramping in; settled when every free node stays within
    tol (B,) of the phase's own operating point."""
    eng, c = transient.engine, transient.circuit
    probe = EnergyProbe(eng, G_list, C, supply, nudge=nudge, method=transient.spec.method)
    res = transient.run(G_list, src, src_start, nudge=nudge, nudge_start=nudge_start, v_start=v_start,
                        keep_voltages=True, probe=probe)
    dc = eng.solve(G_list, src=src, nudge=nudge)
    dev = np.abs(res.voltages - dc.v[None]).max(-1)                   # (T, B)
    within = dev <= tol[None]
    T = len(within)
    last_out = np.where((~within).any(0), T - 1 - np.argmax((~within)[::-1], axis=0), -1)
    settled = within[-1] & res.converged & dc.converged
    k = np.where(settled, last_out + 1, T - 1)
    cum = probe.cumulative
    drawn = cum["sources"] + cum["amp_ports"] + cum["nudge"]          # = dissipated + Δ stored (+ numerical)
    supply_drawn = cum["sources"] + cum["nudge"] + cum["amplifier_supply"]
    cols = np.arange(len(src))
    energy = np.where(settled, supply_drawn[k, cols], np.nan)
    cum = dict(cum, drawn=drawn, stored=stored_energy(C, res.voltages) - stored_energy(C, res.voltages[:1]))
    return Phase(np.where(settled, res.times[k], np.nan), settled, energy, res.v_final, dc.v, cum,
                 res if keep_voltages else None)


@dataclass
class StepCost:
    """Per-sample figures of one training step, each (B,)."""
    phases: dict                    # name -> Phase
    sample_hold_energy: np.ndarray  # J: sampling + holding to the end of programming
    programming: dict               # pulses, energy (J), time (s) of each sample's update
    converter_energy: float         # J: DACs and ADCs per sample (0 without converters)
    time: np.ndarray                # s: phases + acquisitions + programming
    energy: np.ndarray              # J: phases + S&H + programming + converters
    grads: list                     # the EP estimate, mean over the batch


def training_step(transient, circuit, G_list, C, x, labels, loss, beta: float, *, nudging="symmetric",
                  supply=None, pulse: PulseSpec, sample_hold: SampleHold | None = None, rel_tol=0.01,
                  counts_from=one_pulse_per_device, all_rows_at_once=False, keep_voltages=False,
                  converters: ConverterCost | None = None) -> StepCost:
    """The chip's EP step on a batch (each sample on its own: per-sample update, batch 1).
    counts_from(grads) -> signed pulse counts per crossbar; keep_voltages keeps each phase's
    waveforms (Phase.result); converters: by default the chip's own (ConverterCost.training)."""
    supply, sh = supply or AmplifierSupply(), sample_hold or SampleHold()
    eng = transient.engine
    src = circuit.source_voltages(np.asarray(x, float))
    free_dc = eng.solve(G_list, src=src)
    _, dC_dy = loss(circuit.outputs(free_dc.v), labels)
    current = -beta * dC_dy
    plus_dc = eng.solve(G_list, src=src, nudge=current, v0=free_dc.v)
    tol = rel_tol * np.abs(plus_dc.v - free_dc.v).max(1)
    signs = (1.0, -1.0) if nudging == "symmetric" else (1.0,)
    phases = {"free": run_phase(transient, G_list, src, C, supply=supply, tol=tol, keep_voltages=keep_voltages)}
    for s in signs:
        phases["nudged+" if s > 0 else "nudged-"] = run_phase(
            transient, G_list, src, C, supply=supply, tol=tol, nudge=s * current,
            nudge_start=np.zeros_like(current), v_start=free_dc.v, src_start=src, keep_voltages=keep_voltages)
    b = phases["nudged-"].v_dc if nudging == "symmetric" else free_dc.v
    grads, prog = _per_sample_updates(eng, G_list, src, phases["nudged+"].v_dc, b, nudging, beta,
                                      lambda g: programming_cost(counts_from(g), pulse, all_rows_at_once))
    time = sum(p.settle_time for p in phases.values()) + len(phases) * sh.acquire_s + prog["time"]
    sh_energy = _sample_hold_energy(sh, circuit.n_free, list(phases.values()), time)
    conv = converters if converters is not None else converter_cost_of(circuit)
    e_conv = 0.0 if conv is None else conv.training(circuit.n_features, circuit.n_outputs, len(signs))
    energy = sum(p.energy for p in phases.values()) + sh_energy + prog["energy"] + e_conv
    return StepCost(phases, sh_energy, prog, e_conv, time, energy, grads)


def _per_sample_updates(engine, G_list, src, v_a, v_b, nudging, beta, cost):
    """Each sample's own EP estimate (the chip updates after every sample) and the cost of
    writing it: (mean estimate, {pulses, energy, time} arrays (B,))."""
    from .ep import ep_estimate
    circuit = engine.circuit
    Va, Vb = circuit.terminal_voltages(v_a, src), circuit.terminal_voltages(v_b, src)
    B = len(src)
    costs, total = [], None
    for i in range(B):
        w = np.zeros(B)
        w[i] = 1.0
        g = ep_estimate(engine, G_list, Va, Vb, w, beta, nudging)
        costs.append(cost(g))
        total = g if total is None else [u + v for u, v in zip(total, g)]
    return [g / B for g in total], {k: np.array([c[k] for c in costs]) for k in ("pulses", "energy", "time")}


def _sample_hold_energy(sh: SampleHold, n_nodes: int, phases: list, end: np.ndarray) -> np.ndarray:
    """Sampling every node after each phase, then holding it from its acquisition to `end`."""
    held, elapsed = np.zeros_like(end), np.zeros_like(end)
    for p in phases:
        elapsed = elapsed + p.settle_time + sh.acquire_s
        held = held + (end - elapsed)
    return n_nodes * len(phases) * sh.sample_energy() + n_nodes * sh.hold_power() * held


@dataclass
class CutShort:
    grads: list               # the EP estimate from the phases' states at their cut-off
    y: np.ndarray             # outputs read at the end of the free phase
    used: np.ndarray          # samples whose every step converged


def cut_short_gradients(engine, C, G_list, x, labels, loss, beta: float, t_free: float, t_nudged: float, *,
                        nudging="symmetric", steps=50, rise_fraction=0.1, method="be") -> CutShort:
    """EP with phases cut short: the free phase runs t_free from rest, the outputs read then
    set the nudge, each nudged phase runs t_nudged from the free phase's last state with the
    nudge ramped in over rise_fraction·t_nudged; the estimate uses the states at the cut-off.
    Each phase takes `steps` equal steps; long phases end at the operating points, so the
    estimate tends to EP's."""
    from .ep import ep_estimate
    from .transient import NativeTransient, TransientSpec
    c = engine.circuit
    src = c.source_voltages(np.asarray(x, float))

    def phase(duration, **kw):
        spec = TransientSpec(duration=duration, dt=duration / steps, rise=rise_fraction * duration, method=method)
        return NativeTransient(engine, C, spec).run(G_list, src, **kw)

    free = phase(t_free)
    used = free.converged.copy()
    v_f = np.where(used[:, None], free.v_final, c.vref)
    y = c.outputs(v_f)
    _, dC_dy = loss(y, labels)
    current = -beta * dC_dy
    zero = np.zeros_like(current)
    plus = phase(t_nudged, src_start=src, nudge=current, nudge_start=zero, v_start=v_f)
    if nudging == "symmetric":
        minus = phase(t_nudged, src_start=src, nudge=-current, nudge_start=zero, v_start=v_f)
        b, used = minus.v_final, used & minus.converged
    else:
        b = v_f
    used &= plus.converged
    keep = used[:, None]
    Va = np.where(keep, c.terminal_voltages(np.nan_to_num(plus.v_final), src), 0.0)
    Vb = np.where(keep, c.terminal_voltages(np.nan_to_num(b), src), 0.0)
    w = used.astype(float) / max(1, used.sum())
    return CutShort(ep_estimate(engine, G_list, Va, Vb, w, beta, nudging), y, used)


@dataclass(frozen=True)
class PhaseCut:
    """EP with its phases cut short, as a training rule (`AnalogModel.compile(phases=...)`):
    each mini-batch's estimate is `cut_short_gradients`' with a free phase of `t_free` s and
    nudged phases of `t_nudged` s, `steps` backward-Euler steps each (native engine); the
    loss, outputs and power `fit` logs are the free operating point's."""
    t_free: float
    t_nudged: float
    steps: int = 50

    def __post_init__(self):
        for key in ("t_free", "t_nudged"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise AnalogInputError(f"{key}={v!r} must be a duration > 0 (s)")
        if not (isinstance(self.steps, (int, np.integer)) and self.steps >= 1):
            raise AnalogInputError(f"steps={self.steps!r} must be an integer >= 1")

    def gradients(self, model, G_list, x, labels):
        from .capacitance import node_capacitance
        from .ep import GradientResult
        eng = model.get_engine("native")
        cut = cut_short_gradients(eng, node_capacitance(model.circuit), G_list, x, labels, model.loss, model.beta,
                                  self.t_free, self.t_nudged, nudging=model.nudging, steps=self.steps)
        free = eng.solve(G_list, x)
        ok = free.converged
        y = model.circuit.outputs(free.v)
        cost, _ = model.loss(np.where(ok[:, None], y, 0.0), labels)
        return GradientResult(cut.grads, None, np.where(ok, cost, np.nan), y, free, cut.used & ok)

    def predict(self, model, x) -> np.ndarray:
        """Outputs read at the end of a free phase of t_free (a cut-short inference)."""
        from .capacitance import node_capacitance
        y0 = np.zeros(len(x), dtype=int)
        return cut_short_gradients(model.get_engine("native"), node_capacitance(model.circuit), model.conductances, x,
                                   y0, model.loss, model.beta, self.t_free, self.t_free, steps=self.steps).y


def cut_short_cosines(model, x, labels, durations, steps: int = 50) -> tuple[np.ndarray, float]:
    """Cosine to the exact gradient of EP with the free phase cut at durations[i] and the
    nudged ones at durations[j] (grid[i, j]), and EP's at the operating points (symmetric
    nudging, the model's β and loss, its current conductances)."""
    from .capacitance import node_capacitance
    from .cep import cosine
    from .ep import ep_gradients, exact_gradients
    eng, c, G = model.get_engine("native"), model.circuit, model.conductances
    C = node_capacitance(c)
    exact = exact_gradients(eng, c, G, x, labels, model.loss).grads
    ep = cosine(ep_gradients(eng, c, G, x, labels, model.loss, model.beta, "symmetric").grads, exact)
    grid = np.zeros((len(durations), len(durations)))
    for i, tf in enumerate(durations):
        for j, tn in enumerate(durations):
            g = cut_short_gradients(eng, C, G, x, labels, model.loss, model.beta, tf, tn, steps=steps).grads
            grid[i, j] = cosine(g, exact)
    return grid, ep
