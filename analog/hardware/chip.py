"""A programmed chip: one seeded realisation of a trained block on real devices.

    chip = program(model, resolve_hardware("pcm"), seed=0)
    y = chip.predict(x, t=3600.0)          # outputs one hour after programming
    chip.save("chip/"); chip = Chip.load("chip/")   # the trained model is saved beside it

Time. t counts seconds from the chip's programming. A device re-programmed later (in-situ
pulses at time T) drifts from T on: `t_prog` holds each device's last programming time and
its age t − t_prog sets its drift and read noise; a read before a device's last programming
is refused (that state no longer exists).

Reads. `conductances_at(t)` drifts the programmed conductances to time t (not re-clipped
at g_min: a drifting device may fall below it) and adds read noise drawn fresh on every
call. One call serves one batch solve, so all samples of a batch see the same noisy read:
per-sample conductances would cost one matrix build and factorisation per sample instead
of one per batch (the native engine's batch speed rests on a shared K). Across batches
and calls the draws are independent.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import statistics as st
from .compensation import CALIBRATION_READS, DriftCalibration
from .converters import Converters, with_edges
from .edges import wire_conductances
from .pairs import device_targets, pair_maps, read_flips
from .programming import draw_variation, program_devices, streams, vary
from ..block import batch_outputs, block_gradients, score_outputs
from ..engine_cache import cached_engine
from ..errors import AnalogInputError
from .spec import HardwareSpec, check_read_time, validate

_FORMAT = "analog-chip/1"


class Chip:
    """Device state of a chip (device units, S) and the circuit it sits in.

    G_prog, nu, stuck: per dense layer; scale: k per layer (device = k · trained);
    realised: the varied diode and amplifier parameters; circuit: the (varied) circuit."""

    def __init__(self, base_circuit, spec: HardwareSpec, seed: int, G_prog, nu, stuck, scale, realised: dict,
                 layer_names, model=None, adc_range: float | None = None, t_prog=None,
                 calibration: dict | None = None):
        self.spec, self.seed = validate(spec), int(seed)
        self.model = model
        self.base_circuit = base_circuit
        self.G_prog = [np.asarray(g, float) for g in G_prog]
        self.nu = [np.asarray(n, float) for n in nu]
        self.stuck = [np.asarray(s, np.int8) for s in stuck]
        self.scale = np.asarray(scale, float)
        self.t_prog = [np.zeros(g.shape) for g in self.G_prog] if t_prog is None else \
            [np.broadcast_to(np.asarray(p, float), g.shape).copy() for p, g in zip(t_prog, self.G_prog)]
        self.realised = realised
        self.layer_names = list(layer_names)
        # streams 4–7 read noise, calibration, ADC offsets, converter noise; 8 read bit flips
        # (spawned children do not depend on their count: adding one leaves the others' draws)
        self._read_rng, self._cal_rng, rng_offset, rng_conv, self._flip_rng = streams(self.seed, 9)[4:9]
        if base_circuit is None:     # devices only (the statistics of programming and drift), no circuit to read
            self.converters, self.circuit = None, None
        else:
            self.converters = Converters(self.spec, base_circuit.n_outputs, rng_offset, rng_conv, adc_range)
            self.circuit = with_edges(vary(base_circuit, realised), self.converters,
                                      wire_conductances(self.spec, self.scale))
        self._engines: dict = {}
        self._drifted: dict = {}
        self._cal: dict = {}
        self._cal_ref: float | None = None
        self._calibration = None
        self._cal_amplitude: float | None = None
        if calibration:      # the reference read taken at programming, kept when devices were re-written later
            self._cal_ref, self._cal_amplitude = float(calibration["reference"]), float(calibration["amplitude"])

    @property
    def programmed_at(self) -> float:
        """The latest time any device was (re-)programmed; reads before it are refused."""
        return max((float(p.max()) for p in self.t_prog if p.size), default=0.0)

    def _check_time(self, t: float) -> float:
        t = check_read_time(t)
        if t < self.programmed_at:
            raise AnalogInputError(f"hardware.t={t!r}: before the chip's last programming at {self.programmed_at:g} s")
        return t

    # ---- reads ---------------------------------------------------------------------------
    def _at(self, t: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(drifted conductances, read-noise σ) at time t in device units, cached per t
        (both are deterministic; only the read-noise draw changes from read to read)."""
        if t not in self._drifted:
            d = self.spec.device
            ages = [t - p for p in self.t_prog]
            G_t = [G * st.drift_factor(d, nu, a) for G, nu, a in zip(self.G_prog, self.nu, ages)]
            noisy = d.read_noise != "none" and d.read_sigma > 0
            sig = [st.read_sigma(d, g0, g, a) if noisy else None for g0, g, a in zip(self.G_prog, G_t, ages)]
            if len(self._drifted) > 64:
                self._drifted.clear()
            self._drifted[t] = (G_t, sig)
        return self._drifted[t]

    def device_conductances_at(self, t: float = 0.0, rng=None, noise: bool = True) -> list[np.ndarray]:
        """Conductances in device units at t seconds after programming, one fresh read."""
        t = self._check_time(t)
        rng = self._read_rng if rng is None else rng
        floor = 1e-3 * self.spec.device.g_min            # a read never returns G <= 0
        G_t, sig = self._at(t)
        if not noise:
            return [g.copy() for g in G_t]
        read = [g.copy() if s is None else np.maximum(g + s * rng.standard_normal(g.shape), floor)
                for g, s in zip(G_t, sig)]
        return [read_flips(self.spec.device, g, self._flip_rng) for g in read]

    def conductances_at(self, t: float = 0.0, rng=None, compensate: bool | None = None) -> list[np.ndarray]:
        """Conductances the circuit sees at time t (trained units: device / k), one fresh read,
        with the global drift compensation factor applied when enabled."""
        t = self._check_time(t)
        compensate = self.spec.drift_compensation if compensate is None else compensate
        f = self.drift_estimate(t) if compensate and self._compensating(t) else 1.0
        return [g / (k * f) for g, k in zip(self.device_conductances_at(t, rng), self.scale)]

    def set_programmed(self, G_list, t: float = 0.0) -> None:
        """Write the device state at time t (device units, S; e.g. after in-situ pulses): the
        devices whose conductance differs from what they read at t (noise-free) are
        re-programmed at t and drift from t on; the others keep their programmed value and
        programming time. Drift exponents and the stuck map stay the devices'. Cached drifted
        reads and calibrations are dropped; at t = 0 the calibration's reference read is taken
        again (nothing has drifted yet), later the one taken at programming is kept (the
        chip stored it, it measures the drift since programming)."""
        t = self._check_time(t)
        G_list = [np.asarray(g, float) for g in G_list]
        if len(G_list) != len(self.G_prog) or any(g.shape != o.shape for g, o in zip(G_list, self.G_prog)):
            raise ValueError(f"set_programmed: shapes {[g.shape for g in G_list]}, expected "
                             f"{[g.shape for g in self.G_prog]}")
        if not all(np.all(np.isfinite(g)) and np.all(g > 0) for g in G_list):
            raise ValueError("set_programmed: conductances must be finite and > 0")
        if t > 0:
            if self._compensating(t) and self._cal_ref is None:
                self.drift_estimate(t)        # the reference read, of the state as programmed
            now = self.device_conductances_at(t, noise=False)
            # unchanged up to rounding (a state passed through trained units, G/k·k): not re-programmed
            changed = [~np.isclose(g, n, rtol=1e-9, atol=0.0) for g, n in zip(G_list, now)]
            self.G_prog = [np.where(c, g, old) for c, g, old in zip(changed, G_list, self.G_prog)]
            self.t_prog = [np.where(c, t, p) for c, p in zip(changed, self.t_prog)]
        else:
            self.G_prog = [g.copy() for g in G_list]
            self._cal_ref = None
        self._drifted.clear()
        self._cal.clear()

    # ---- drift compensation ----------------------------------------------------------------
    def _compensating(self, t: float) -> bool:
        return self.spec.device.drift != "none" and t > self.spec.device.t_c

    def drift_estimate(self, t: float) -> float:
        """Global drift factor f̂ from a calibration read (compensation.py: diodes blocked,
        small source voltages): the current the crossbars draw from the sources at t over
        the same at programming (t = 0), each the mean of CALIBRATION_READS reads. One
        calibration per read time, as a deployed chip would do it; its reads have their own
        noise draws (the calibration stream of the chip's seed)."""
        t = check_read_time(t)
        if t not in self._cal:
            if self._calibration is None:
                self._calibration = DriftCalibration(self.circuit, self._cal_amplitude)
            if self._cal_ref is None:
                self._cal_ref = self._calibration.current(self._calibration_reads(0.0))
                self._cal_amplitude = self._calibration.amplitude
            self._cal[t] = self._calibration.current(self._calibration_reads(t)) / self._cal_ref
        return self._cal[t]

    def _calibration_reads(self, t: float) -> list[list[np.ndarray]]:
        return [[g / k for g, k in zip(self.device_conductances_at(t, self._cal_rng), self.scale)]
                for _ in range(CALIBRATION_READS)]

    # ---- solving ---------------------------------------------------------------------------
    def engine(self, kind: str = "native", **options):
        """The chip's engine of `kind`, with these options (cached like a model's)."""
        return cached_engine(self._engines, self.circuit, kind, **options)

    def _x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.circuit.n_features:
            raise ValueError(f"x has shape {x.shape}, but the chip takes (batch, {self.circuit.n_features}) "
                             "input voltages")
        return x

    def solve(self, x, t: float = 0.0, engine: str = "native", rng=None, G_list=None, **options):
        """Operating points of the chip read at time t (one read-noise draw for the batch)."""
        x = self._x(x)
        G = G_list if G_list is not None else self.conductances_at(t, rng)
        return self.engine(engine, **options).solve(G, x)

    def predict(self, x, t: float = 0.0, batch_size: int = 4096, engine: str = "native", rng=None) -> np.ndarray:
        """Differential outputs (B, K) at time t; a fresh read per batch of `batch_size`."""
        x = self._x(x)
        if not len(x):
            return np.zeros((0, self.circuit.n_outputs))
        return np.concatenate([self.circuit.outputs(self.solve(x[lo: lo + batch_size], t, engine, rng).v)
                               for lo in range(0, len(x), batch_size)])

    def calibrate_adc(self, x, t: float = 0.0) -> float:
        """Set the ADC's full scale from a calibration set x (when hardware.adc.calibrate):
        the largest |y| of the chip's raw outputs on it. Returns the full scale (V)."""
        if not self.spec.adc.calibrate:
            return self.converters.adc_range
        raw = getattr(self.circuit, "raw_outputs", self.circuit.outputs)
        x = self._x(x)
        return self.converters.calibrate(np.concatenate(
            [raw(self.solve(x[lo: lo + 4096], t).v) for lo in range(0, len(x), 4096)]))

    def to_netlist(self, x, t: float = 0.0, rng=None) -> str:
        """Standalone ngspice netlist of the chip for the first sample of x, read at time t."""
        from ..netlist import to_netlist
        x = self._x(np.atleast_2d(x))
        return to_netlist(self.circuit, self.conductances_at(t, rng), x[0])

    def close(self) -> None:
        for eng in self._engines.values():
            if hasattr(eng, "close"):
                eng.close()
        self._engines.clear()

    # ---- as an analog.block.Block ------------------------------------------------------------
    def _trained(self):
        """The compiled model the chip was programmed from: its cost, β and nudging are the chip's."""
        if self.model is None or not getattr(self.model, "compiled", False):
            raise AnalogInputError("this chip's trained model is missing or loaded uncompiled (no loss, beta, "
                                   "nudging): give Chip.load a compiled model")
        return self.model

    def scores(self, x, y, t: float = 0.0, batch_size: int = 4096) -> dict:
        """As AnalogModel.scores, on the chip read at time t (a fresh read per batch); the
        loss is the trained model's cost (NaN when the chip has no compiled model)."""
        x, y = self._x(x), np.asarray(y)
        model = self.model if getattr(self.model, "compiled", False) else None
        out = batch_outputs(lambda xb: self.solve(xb, t), self.circuit, x, batch_size)
        return score_outputs(*out, y, model.loss if model is not None else None)

    def accuracy(self, x, y, t: float = 0.0, batch_size: int = 4096) -> float:
        """Accuracy at read time t; a sample that did not converge counts as wrong."""
        x, y = self._x(x), np.asarray(y)
        return score_outputs(*batch_outputs(lambda xb: self.solve(xb, t), self.circuit, x, batch_size), y)["accuracy"]

    def gradients(self, x, labels, method: str = "ep", input_grad: bool = False, loss=None, t: float = 0.0):
        """As AnalogModel.gradients, on the chip's circuit and its conductances read at time
        t (one fresh read per call), native engine; cost, β and nudging of the trained model
        unless `loss` (a Loss or its name) is given."""
        from ..losses import get_loss
        model = self._trained()
        cost = model.loss if loss is None else get_loss(loss)
        engine = self.engine("native")
        return block_gradients(engine, engine, self.circuit, self.conductances_at(t), self._x(x), labels, cost,
                               method=method, beta=model.beta, nudging=model.nudging, input_grad=input_grad)

    def at(self, t: float):
        """This chip read at time t, as a Block whose every call reads at t (read_at.ChipAt)."""
        from .read_at import ChipAt
        return ChipAt(self, t)

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path) -> Path:
        """chip.json (spec, seed, layers, scales) + chip.npz (device and circuit arrays), and
        the trained model it was programmed from in `model/` (AnalogModel.save: JSON + npz)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.model is not None and hasattr(self.model, "save"):
            self.model.save(path / "model")
        arrays = {}
        for k, name in enumerate(self.layer_names):
            arrays[f"G_prog/{k}"], arrays[f"nu/{k}"], arrays[f"stuck/{k}"] = self.G_prog[k], self.nu[k], self.stuck[k]
        for key in ("amp_gain", "amp_offset"):
            if key in self.realised:
                arrays[key] = self.realised[key]
        if self.programmed_at > 0:
            arrays.update({f"t_prog/{k}": p for k, p in enumerate(self.t_prog)})
        params = {}
        for layer, p in self.realised.get("device_params", {}).items():
            params[layer] = sorted(p)
            for pname, value in p.items():
                arrays[f"device/{layer}/{pname}"] = value
        np.savez(path / "chip.npz", **arrays)
        meta = {"format": _FORMAT, "seed": self.seed, "spec": self.spec.to_dict(), "layers": self.layer_names,
                "scale": self.scale.tolist(), "device_params": params, "adc_range": self.converters.adc_range,
                "circuit": {"n_free": self.base_circuit.n_free, "n_features": self.base_circuit.n_features,
                            "n_outputs": self.base_circuit.n_outputs}}
        if self.programmed_at > 0 and self._cal_ref is not None:
            meta["calibration"] = {"reference": self._cal_ref, "amplitude": self._cal_amplitude}
        (path / "chip.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path, model=None) -> "Chip":
        """A saved chip on the model it was programmed from (the model supplies the circuit;
        by default the one saved beside the chip)."""
        path = Path(path)
        for name in ("chip.json", "chip.npz"):
            if not (path / name).is_file():
                raise ValueError(f"{path / name}: missing (not a saved chip folder)")
        if model is None:
            if not (path / "model").is_dir():
                raise ValueError(f"{path}: no model/ folder beside the chip; pass the model it was programmed from")
            from ..model import AnalogModel
            model = AnalogModel.load(path / "model")
        meta = json.loads((path / "chip.json").read_text())
        if meta.get("format") != _FORMAT:
            raise AnalogInputError(f"{path / 'chip.json'}: format {meta.get('format')!r}, expected {_FORMAT!r}")
        names = [layer.name for layer in model.dense_layers]
        if names != meta["layers"]:
            raise AnalogInputError(f"{path}: chip layers {meta['layers']} do not match the model's {names}")
        try:
            with np.load(path / "chip.npz", allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise AnalogInputError(f"{path / 'chip.npz'}: damaged or truncated ({exc})") from None
        n = len(names)
        realised: dict = {"device_params": {layer: {p: data[f"device/{layer}/{p}"] for p in plist}
                                            for layer, plist in meta["device_params"].items()}}
        for key in ("amp_gain", "amp_offset"):
            if key in data:
                realised[key] = data[key]
        return cls(model.circuit, HardwareSpec.from_dict(meta["spec"]), meta["seed"],
                   [data[f"G_prog/{k}"] for k in range(n)], [data[f"nu/{k}"] for k in range(n)],
                   [data[f"stuck/{k}"] for k in range(n)], meta["scale"], realised, names, model,
                   meta.get("adc_range"),
                   t_prog=[data[f"t_prog/{k}"] for k in range(n)] if "t_prog/0" in data else None,
                   calibration=meta.get("calibration"))


def program(model, spec: HardwareSpec, seed: int = 0) -> Chip:
    """Program a trained model onto devices: a seeded, reproducible chip (see programming.py).
    `spec`: a HardwareSpec or a preset name."""
    if isinstance(spec, str):
        from .presets import resolve_hardware
        spec = resolve_hardware(spec)
    if not isinstance(spec, HardwareSpec):
        raise TypeError(f"program: spec must be a HardwareSpec or a preset name, got {type(spec).__name__}")
    spec = validate(spec)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")
    d = spec.device
    maps = pair_maps(model.circuit, d.pairs) if d.pairs != "none" else None   # refused before any work
    rng_prog, rng_stuck, rng_nu, rng_var, _ = streams(int(seed))
    G_prog, nu, stuck, scale = [], [], [], []
    for i, (layer, G) in enumerate(zip(model.dense_layers, model.conductances)):
        k = d.g_max / layer.g_max
        target = k * np.asarray(G, float)
        if maps is not None:           # pair states, each device on or off, programming bit errors
            target = device_targets(d, maps[i], target, rng_prog)[0]
        g, n, s = program_devices(d, target, rng_prog, rng_stuck, rng_nu)
        G_prog.append(g), nu.append(n), stuck.append(s), scale.append(k)
    realised = draw_variation(model.circuit, spec.variation, rng_var)
    return Chip(model.circuit, spec, int(seed), G_prog, nu, stuck, scale, realised,
                [layer.name for layer in model.dense_layers], model)
