"""Settling time and energy of an inference, from a native transient (analog/transient.py).

Power terms at a state v and sources src (all node voltages relative to ground):

* p_sources = Σ_s V_s I_s: what the circuit's voltage sources deliver (input drivers, bias
  sources, diode-bias sources), I_s the current each delivers into the circuit;
* p_amp_ports = Σ_k (V_out,k − V_in,k / A_k) I_out,k: the net power of amplifier k's ports
  (its output delivers I_out,k at V_out,k; its backward path draws I_out,k / A_k at its input);
* p_nudge = Σ_n I_n V_n of the nudging current sources (0 in inference);
* p_diss: Σ G ΔV² + Σ I·u of the devices + g_min shunts (analog.solution.dissipated_power).

Tellegen's theorem with the capacitor currents C dv/dt gives p_sources + p_amp_ports + p_nudge
= p_diss + d/dt Σ ½ C v². `EnergyProbe` integrates each term over the steps (each step's
power at the state where the method evaluates its currents, times h) and keeps the
cumulative sums, so that the energy up to the settling time can be read off. With the
midpoint rule the balance holds exactly; with backward Euler it holds up to the method's own
artificial loss Σ ½ C (Δv)² per step (`numerical`, reported so that the books close).

Amplifier supply model: each amplifier draws a bias current I_bias from a supply V_DD all
the time, and every current at its ports (I_out at the output, I_out / A at the input) is
drawn through the supply as well:  P_amp,k = V_DD (I_bias + |I_out,k| (1 + 1/A_k)).
The energy of an inference is the energy the voltage sources deliver plus the amplifiers'
supply energy, up to the settling time, plus the converters' (analog/energy_figures.py) when
the chip has any.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import crossbar as xb
from .amplifier_design import AmplifierDesign, reference_settling
from .energy_figures import FIGURES, ConverterCost, converter_cost_of
from .errors import AnalogInputError
from .solution import dissipated_power


@dataclass(frozen=True)
class AmplifierSupply:
    """supply_v (V_DD, V) and bias_a (quiescent current per amplifier, A; FIGURES["amplifier_bias"]
    is the main job's block's derived figure). bias_a=None: derived from the run's own settling
    time by `design` (analog/amplifier_design.py; `measure_inferences` only)."""
    supply_v: float = FIGURES["amplifier_supply"].value
    bias_a: float | None = FIGURES["amplifier_bias"].value
    design: AmplifierDesign = AmplifierDesign()

    def __post_init__(self):
        for key in ("supply_v", "bias_a"):
            value = getattr(self, key)
            if value is None and key == "bias_a":
                continue
            if not (np.isfinite(value) and value >= 0):
                raise AnalogInputError(f"transient.amplifier_{key}={value!r} must be a finite number >= 0")

    def bias(self) -> float:
        if self.bias_a is None:
            raise AnalogInputError("transient.amplifier_bias=derived needs the settling time: only "
                                   "measure_inferences derives it; give a number here")
        return self.bias_a


def readout_tolerance(bits: int, range_v: float) -> float:
    """Half a least significant bit of a `bits`-bit readout spanning `range_v` volts."""
    if not (int(bits) == bits and bits >= 1):
        raise AnalogInputError(f"transient.readout_bits={bits!r} must be an integer >= 1")
    if not (np.isfinite(range_v) and range_v > 0):
        raise AnalogInputError(f"transient.readout_range={range_v!r} must be a finite number > 0 (volts)")
    return 0.5 * range_v / 2 ** int(bits)


def amplifier_output_currents(engine, G_list, V: np.ndarray) -> np.ndarray:
    """Current each amplifier's output delivers into the crossbars it drives, (B, n_amp)."""
    c = engine.circuit
    first_amp = c.n_free + c.n_sources
    i_amp = np.zeros((V.shape[0], len(c.amp_in)))
    for blk, (_, i_in) in zip(c.dense, engine.dense_currents(G_list, V)):
        amp_cols = blk.in_terms >= first_amp
        if amp_cols.any():
            np.add.at(i_amp, (slice(None), blk.in_terms[amp_cols] - first_amp), i_in[:, amp_cols])
    return i_amp


def power_terms(engine, G_list, v, src, nudge=None) -> dict:
    """The power terms of the module docstring at states v (B, n_free), each (B,)."""
    c = engine.circuit
    V = c.terminal_voltages(v, src)
    i_amp = amplifier_output_currents(engine, G_list, V)
    v_out = V[:, c.n_free + c.n_sources:]
    v_in = v[:, c.amp_in]
    p_nudge = np.zeros(len(v)) if nudge is None else (c.nudge_currents(nudge) * v).sum(1)
    return dict(sources=(src * engine.source_currents(G_list, v, src)).sum(1),
                amp_ports=((v_out - v_in / c.amp_gain) * i_amp).sum(1),
                nudge=p_nudge, dissipated=dissipated_power(c, G_list, v, src),
                amp_current=(np.abs(i_amp) * (1.0 + 1.0 / c.amp_gain)).sum(1))


class EnergyProbe:
    """A transient probe that integrates the power terms step by step. After the run,
    `cumulative[name]` is (T, B): the energy of that term from t = 0 to each time point."""

    TERMS = ("sources", "amp_ports", "nudge", "dissipated", "amplifier_supply", "numerical")

    def __init__(self, engine, G_list, C, supply: AmplifierSupply | None = None, nudge=None, method="be"):
        self.engine, self.G, self.C = engine, G_list, np.asarray(C, float)
        self.supply = supply or AmplifierSupply()
        self.nudge, self.method = nudge, method
        self.steps: dict[str, list] = {k: [] for k in self.TERMS}

    def __call__(self, rec) -> None:
        nudge = rec.nudge_eval if rec.nudge_eval is not None else self.nudge    # a ramped nudge: its value now
        p = power_terms(self.engine, self.G, rec.v_eval, rec.src_eval, nudge)
        s = self.supply
        n_amp = len(self.engine.circuit.amp_in)
        p["amplifier_supply"] = s.supply_v * (n_amp * s.bias() + p.pop("amp_current"))
        dv = rec.v - rec.v_prev
        p["numerical"] = (0.5 * self.C * dv * dv).sum(1) / rec.h if self.method == "be" else np.zeros(len(dv))
        for k in self.TERMS:
            self.steps[k].append(p[k] * rec.h)

    @property
    def cumulative(self) -> dict[str, np.ndarray]:
        out = {}
        for k, parts in self.steps.items():
            arr = np.array(parts)
            out[k] = np.concatenate([np.zeros((1,) + arr.shape[1:]), np.cumsum(arr, axis=0)])
        return out


class InferencePower:
    """The two terms an inference's energy needs, p_sources and the amplifiers' port
    currents Σ_k |I_out,k| (1 + 1/A_k), computed per step at O(B·n) cost: the crossbar part of
    Σ_s V_s I_s is Σ_s colsum_s V_s² − Σ_r V_r (G_src V_src)_r, and during the input ramp
    V_src is an affine function of time, so G_src V_src is computed once per run at its two
    ends. Equal to `power_terms` (tests/test_transient.py checks it)."""

    def __init__(self, engine, G_list, src_start, src_end, rise):
        c = engine.circuit
        self.c, self.rise = c, rise
        self.src_start, self.src_end = np.asarray(src_start, float), np.asarray(src_end, float)
        self.parts, self.amp_parts = [], []
        first_amp = c.n_free + c.n_sources
        for blk, G in zip(c.dense, G_list):
            D = np.asarray(G, float) if blk.cols is None else xb.matrix(blk, G).toarray()
            src_cols = c.is_source_term(blk.in_terms)
            if src_cols.any():
                Gs, idx = D[:, src_cols], blk.in_terms[src_cols] - c.n_free
                self.parts.append((blk.out_terms, idx, Gs.sum(0), self.src_start[:, idx] @ Gs.T,
                                   self.src_end[:, idx] @ Gs.T))
            amp_cols = blk.in_terms >= first_amp
            if amp_cols.any():
                Ga = D[:, amp_cols]
                self.amp_parts.append((blk.out_terms, blk.in_terms[amp_cols], blk.in_terms[amp_cols] - first_amp,
                                       Ga, Ga.sum(0)))

    def __call__(self, v, t):
        c = self.c
        frac = 1.0 if self.rise <= 0 or t >= self.rise else t / self.rise
        src = self.src_start + frac * (self.src_end - self.src_start)
        V = c.terminal_voltages(v, src)
        p = np.zeros(len(v))
        for rows, idx, colsum, P0, P1 in self.parts:
            p += (colsum * src[:, idx] ** 2).sum(1) - (V[:, rows] * (P0 + frac * (P1 - P0))).sum(1)
        for blk in c.nonlinear:
            current, _ = blk.device.current(blk.sign * (V[:, blk.node_terms] - V[:, [blk.ref_term]]))
            p -= V[:, blk.ref_term] * blk.sign * current.sum(1)
        i_amp = np.zeros((len(v), len(c.amp_in)))
        for rows, terms, k, Ga, colsum in self.amp_parts:
            i_amp[:, k] += V[:, terms] * colsum - V[:, rows] @ Ga
        return p, (np.abs(i_amp) * (1.0 + 1.0 / c.amp_gain)).sum(1)


class InferenceProbe:
    """Cumulative energy (T, B) of the voltage sources and of the amplifiers' port currents
    drawn through the supply (their bias, constant, is added from the settling time)."""

    def __init__(self, power: InferencePower, supply: AmplifierSupply):
        self.power, self.supply = power, supply
        self.sources, self.amplifiers = [], []

    def __call__(self, rec) -> None:
        p_src, i_amp = self.power(rec.v_eval, rec.t_eval)
        self.sources.append(p_src * rec.h)
        self.amplifiers.append(self.supply.supply_v * i_amp * rec.h)

    def cumulative(self):
        def cum(parts):
            arr = np.array(parts)
            return np.concatenate([np.zeros((1,) + arr.shape[1:]), np.cumsum(arr, axis=0)])
        return cum(self.sources), cum(self.amplifiers)


def stored_energy(C, v) -> np.ndarray:
    """½ Σ C v² per sample (J)."""
    return 0.5 * (np.asarray(C, float) * np.asarray(v, float) ** 2).sum(-1)


def settling_index(outputs: np.ndarray, final: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the first time index from which every output stays within `tol` of
    `final` (B, n_out) to the end, and whether it settled at all (within at the last point)."""
    within = (np.abs(outputs - final[None]) <= tol).all(-1)          # (T, B)
    T = len(within)
    out_of = ~within
    last_out = np.where(out_of.any(0), T - 1 - np.argmax(out_of[::-1], axis=0), -1)
    settled = within[-1]
    return np.where(settled, last_out + 1, T - 1), settled


class SettledForGood:
    """Stop criterion: every sample's outputs are within `tol` of the operating point v* and
    provably stay there. Once the sources hold still, each backward-Euler step is a proximal
    step on the convex F in the norm ‖u‖² = Σ s_n C_n u_n², which never increases the
    distance D = ‖v − v*‖ to the minimiser (the continuous flow has the same property). Since
    |v_n − v*_n| ≤ D / √(s_n C_n), D·(1/√(s C)⁺ + 1/√(s C)⁻) ≤ tol bounds every output's
    deviation from then on."""

    def __init__(self, circuit, C, v_star, tol, rise):
        w = circuit.free_scale * np.asarray(C, float)
        self.w, self.v_star, self.tol, self.rise = w, v_star, tol, rise
        self.factor = (1.0 / np.sqrt(w[circuit.out_plus]) + 1.0 / np.sqrt(w[circuit.out_minus])).max()

    def __call__(self, rec) -> bool:
        if rec.t - rec.h < self.rise:          # the step's sources still moved
            return False
        D = np.sqrt((self.w * (rec.v - self.v_star) ** 2).sum(1))
        return bool(np.all(D * self.factor <= self.tol))


def measure_inferences(engine, G_list, C, src_end, *, spec=None, supply=None, tol: float = 3.9e-3,
                       chunk: int = 512, converters: ConverterCost | None = None, amp_load=None) -> dict:
    """Settling time and energy of each inference (B samples of source voltages src_end, from
    the circuit at rest with every input at V_ref); with backward Euler a chunk's run ends as
    soon as `SettledForGood` holds for all its samples. Returns arrays (B,): settle_time (s; NaN
    when not settled), settled (bool), energy, energy_sources, energy_amplifiers (J up to the
    settling time; NaN when not settled), energy_converters (J: `converters`, by default the
    chip's own (`converter_cost_of`), 0 without any), final_error (V, largest |v(T) − DC
    operating point|); and amplifier_bias (A, a float): the supply's, or with bias_a=None the
    one `supply.design` derives from the median settling time and the largest amplifier load
    (amp_load, F per amplifier; default: `capacitance.amplifier_load` at the default figures).
    `energy` includes the converters."""
    from .transient import NativeTransient, TransientSpec
    spec = spec or TransientSpec()
    tr = NativeTransient(engine, C, spec)
    supply = supply or AmplifierSupply()
    c = engine.circuit
    conv = converters if converters is not None else converter_cost_of(c)
    e_conv = 0.0 if conv is None else conv.inference(c.n_features, c.n_outputs)
    parts = []
    for lo in range(0, len(src_end), chunk):
        s_end = np.asarray(src_end[lo: lo + chunk], float)
        s_start = c.source_voltages(np.zeros((len(s_end), c.n_features)))
        probe = InferenceProbe(InferencePower(engine, G_list, s_start, s_end, spec.rise), supply)
        dc = engine.solve(G_list, src=s_end)
        stop = None
        if spec.method == "be" and dc.converged.all():
            stop = SettledForGood(c, C, dc.v, tol, spec.rise)
        res = tr.run(G_list, s_end, s_start, probe=probe, stop=stop)
        k, settled = settling_index(res.outputs, c.outputs(dc.v), tol)
        settled &= res.converged & dc.converged
        cols = np.arange(len(s_end))
        cum_src, cum_amp = probe.cumulative()
        nan = np.full(len(s_end), np.nan)
        parts.append(dict(settle_time=np.where(settled, res.times[k], nan), settled=settled,
                          energy_sources=np.where(settled, cum_src[k, cols], nan),
                          energy_ports=np.where(settled, cum_amp[k, cols], nan),
                          final_error=np.abs(res.v_final - dc.v).max(1)))
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    bias = _bias_of(supply, c, out["settle_time"], amp_load)
    # the bias is constant: its energy up to the settling time is V_DD · n_amp · I_bias · t_settle
    out["energy_amplifiers"] = out.pop("energy_ports") + supply.supply_v * len(c.amp_in) * bias * out["settle_time"]
    out["energy"] = out["energy_sources"] + out["energy_amplifiers"] + e_conv
    out["energy_converters"] = np.full(len(src_end), e_conv)
    out["amplifier_bias"] = bias
    return out


def _bias_of(supply: AmplifierSupply, circuit, settle_times, amp_load) -> float:
    if supply.bias_a is not None:
        return float(supply.bias_a)
    if len(circuit.amp_in) == 0:
        return 0.0
    if amp_load is None:
        from .capacitance import amplifier_load
        amp_load = amplifier_load(circuit)
    t_ref = reference_settling(settle_times)
    return supply.design.bias(float(np.max(amp_load)), t_ref) if np.isfinite(t_ref) else float("nan")
