"""AnalogModel: a compiled circuit with a Keras-like training API (compile / fit / evaluate /
predict / save / load), trained by Equilibrium Propagation on either engine."""
from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .circuit import CompiledCircuit, compile_circuit
from .devices import Device, IdealDiode, MOSDiode, ShockleyDiode
from .ep import GradientResult, ep_gradients, exact_gradients
from .layers import (Amplification, BiasVoltage, Concatenate, CurrentLayer, Dense, DiodeLayer, InputVoltage,
                     Nodes)
from .losses import Loss, get_loss
from .native import NativeEngine, total_energy
from .optimizers import Optimizer, Schedule, get_optimizer
from .solution import Solution


class Callback:
    """Hooks called by `AnalogModel.fit` (override what you need)."""

    def on_train_begin(self, model): ...
    def on_epoch_end(self, epoch: int, logs: dict, model): ...
    def on_train_end(self, model): ...


@dataclass
class History:
    history: dict = field(default_factory=dict)      # metric name → list per epoch
    histograms: list = field(default_factory=list)   # per epoch: {name: (counts, edges)}
    epoch: list = field(default_factory=list)

    def append(self, epoch: int, logs: dict, hist: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        self.histograms.append(hist)


def _check_xy(x, y, n_features, n_outputs, where="x"):
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"{where} has shape {x.shape}, but the analog block takes (batch, {n_features}) input voltages")
    if not np.all(np.isfinite(x)):
        i = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"{where} has NaN or infinite values (first at sample {i})")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (x.shape[0],):
            raise ValueError(f"labels have shape {y.shape}, expected ({x.shape[0]},) to match {where}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= n_outputs):
            raise ValueError(f"labels range {y.min()}..{y.max()} but the output layer has {n_outputs} "
                             f"differential outputs (classes 0..{n_outputs - 1})")
    return x, y


class AnalogModel:
    """A resistive network from an InputVoltage to a CurrentLayer."""

    def __init__(self, inputs: Nodes, outputs: Nodes, vref: float = 0.0, gmin: float = 1e-12,
                 name: str = "analog_block"):
        self.inputs, self.outputs, self.name = inputs, outputs, name
        self.circuit: CompiledCircuit = compile_circuit(inputs, outputs, vref=vref, gmin=gmin)
        self.dense_layers: list[Dense] = [b.layer for b in self.circuit.dense]
        self._engines: dict = {}
        self.compiled = False
        self.epoch = 0
        self.history = History()
        self.config: dict = {}

    # ---- circuit access ---------------------------------------------------------------
    @property
    def conductances(self) -> list[np.ndarray]:
        return [layer.G for layer in self.dense_layers]

    def set_conductances(self, G_list) -> None:
        if len(G_list) != len(self.dense_layers):
            raise ValueError(f"{len(G_list)} conductance arrays for {len(self.dense_layers)} dense layers")
        for layer, G in zip(self.dense_layers, G_list):
            layer.set_conductances(G)
            if np.any(layer.G < layer.g_min) or np.any(layer.G > layer.g_max):
                raise ValueError(f"conductances of layer '{layer.name}' leave [{layer.g_min}, {layer.g_max}]")

    def get_engine(self, kind: str | None = None, **kwargs):
        kind = kind or getattr(self, "engine_name", "native")
        key = (kind, tuple(sorted(kwargs.items())))
        if key not in self._engines:
            if kind == "native":
                self._engines[key] = NativeEngine(self.circuit, **kwargs)
            elif kind in ("ngspice", "ngspice-rebuild"):
                from .ngspice_engine import NgspiceEngine
                mode = "rebuild" if kind.endswith("rebuild") else "loaded"
                self._engines[key] = NgspiceEngine(self.circuit, mode=mode, **kwargs)
            else:
                raise ValueError(f"engine={kind!r} must be 'native' or 'ngspice'")
        return self._engines[key]

    def close(self) -> None:
        for eng in self._engines.values():
            if hasattr(eng, "close"):
                eng.close()
        self._engines.clear()

    def solve(self, x, nudge=None, engine: str | None = None, v0=None) -> Solution:
        x, _ = _check_xy(x, None, self.circuit.n_features, self.circuit.n_outputs)
        return self.get_engine(engine).solve(self.conductances, x, nudge=nudge, v0=v0)

    def energy(self, state: Solution, nudge=None) -> np.ndarray:
        """Total co-content per sample at a state (with nudging currents: F = E − Σ s·I·V)."""
        return total_energy(self.circuit, self.conductances, state.v, state.src, nudge)

    def to_netlist(self, x, nudge=None) -> str:
        from .netlist import to_netlist
        x = np.atleast_2d(np.asarray(x, dtype=float))
        _check_xy(x, None, self.circuit.n_features, self.circuit.n_outputs)
        return to_netlist(self.circuit, self.conductances, x[0], None if nudge is None else np.asarray(nudge)[0])

    # ---- training ------------------------------------------------------------------------
    def compile(self, loss="mse", optimizer="adam", beta: float = 1e-6, nudging: str = "symmetric",
                engine: str = "native", engine_options: dict | None = None, **loss_options):
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta={beta!r} must be a finite number > 0 (amperes per unit of dC/dy)")
        if nudging not in ("symmetric", "positive"):
            raise ValueError(f"nudging={nudging!r} must be 'symmetric' or 'positive'")
        if engine not in ("native", "ngspice"):
            raise ValueError(f"engine={engine!r} must be 'native' or 'ngspice'")
        self.loss: Loss = get_loss(loss, **loss_options)
        self.optimizer: Optimizer = get_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
        self.beta, self.nudging, self.engine_name = float(beta), nudging, engine
        self.engine_options = dict(engine_options or {})
        self.compiled = True
        return self

    def _engine(self):
        return self.get_engine(self.engine_name, **self.engine_options)

    def gradients(self, x, labels, method: str = "ep", nudging: str | None = None, beta: float | None = None,
                  input_grad: bool = False, engine: str | None = None) -> GradientResult:
        """EP estimate (method='ep') or exact implicit gradient (method='exact', native)."""
        self._require_compiled()
        x, labels = _check_xy(x, labels, self.circuit.n_features, self.circuit.n_outputs)
        if method == "exact":
            return exact_gradients(self.get_engine("native"), self.circuit, self.conductances, x, labels, self.loss)
        eng = self.get_engine(engine) if engine else self._engine()
        return ep_gradients(eng, self.circuit, self.conductances, x, labels, self.loss,
                            beta if beta is not None else self.beta, nudging or self.nudging, input_grad)

    def input_gradient(self, x, labels, method: str = "ep") -> tuple[np.ndarray, np.ndarray]:
        """∂C/∂x per sample (B, n_features) and the per-sample cost; NaN rows did not converge."""
        res = self.gradients(x, labels, method=method, input_grad=True)
        return res.input_grad, res.loss

    def _require_compiled(self):
        if not self.compiled:
            raise RuntimeError("call model.compile(loss=..., optimizer=..., beta=...) first")

    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, validation_data=None, callbacks=(),
            verbose: int = 1, shuffle: bool = True, seed: int = 0) -> History:
        """Train by EP for `epochs` more epochs (continues from `self.epoch`, so a saved and
        reloaded model resumes exactly). Returns the history (also kept on the model)."""
        self._require_compiled()
        x, y = _check_xy(x, y, self.circuit.n_features, self.circuit.n_outputs)
        if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        if validation_data is not None:
            validation_data = _check_xy(*validation_data, self.circuit.n_features, self.circuit.n_outputs,
                                        where="validation x")
        from tqdm.auto import tqdm
        for cb in callbacks:
            cb.on_train_begin(self)
        hidden_free = self._hidden_nodes()
        start = self.epoch
        for epoch in range(start, start + epochs):
            self.optimizer.epoch = epoch
            order = np.random.default_rng([seed, epoch]).permutation(len(x)) if shuffle else np.arange(len(x))
            t0 = time.perf_counter()
            tot = dict(loss=0.0, correct=0, seen=0, failed=0, clipped=0, power=0.0)
            hidden_sample = []
            bar = tqdm(total=len(x), desc=f"epoch {epoch + 1}/{start + epochs}", unit="sample",
                       disable=not verbose, leave=verbose > 1 or epoch == start + epochs - 1, dynamic_ncols=True)
            for lo in range(0, len(x), batch_size):
                idx = order[lo: lo + batch_size]
                res = ep_gradients(self._engine(), self.circuit, self.conductances, x[idx], y[idx], self.loss,
                                   self.beta, self.nudging)
                ok = res.used
                tot["failed"] += int((~ok).sum())
                if ok.any():
                    tot["clipped"] += self.optimizer.apply(self.dense_layers, res.grads)
                    tot["loss"] += float(res.loss[ok].sum())
                    tot["correct"] += int((res.y[ok].argmax(1) == y[idx][ok]).sum())
                    tot["seen"] += int(ok.sum())
                    tot["power"] += float(res.free.power[ok].sum())
                    if sum(len(h) for h in hidden_sample) < 4000:
                        hidden_sample.append(res.free.v[ok][:, hidden_free])
                bar.update(len(idx))
                n = max(1, tot["seen"])
                bar.set_postfix(loss=f"{tot['loss'] / n:.4f}", acc=f"{tot['correct'] / n:.3f}")
            bar.close()
            n = max(1, tot["seen"])
            logs = {"loss": tot["loss"] / n, "accuracy": tot["correct"] / n, "power_mean": tot["power"] / n,
                    "nonconverged": tot["failed"], "clipped": tot["clipped"],
                    "epoch_seconds": time.perf_counter() - t0,
                    "samples_per_second": len(x) / max(1e-9, time.perf_counter() - t0)}
            if validation_data is not None:
                val = self.evaluate(*validation_data)
                logs.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            hist = self._histograms(np.concatenate(hidden_sample) if hidden_sample else np.zeros((0, 0)))
            self.epoch = epoch + 1
            self.history.append(epoch, logs, hist)
            if verbose:
                print(f"epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4g}" for k, v in logs.items()))
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs, self)
        for cb in callbacks:
            cb.on_train_end(self)
        return self.history

    def _hidden_nodes(self) -> np.ndarray:
        out = set(self.circuit.out_plus) | set(self.circuit.out_minus)
        return np.array([i for i in range(self.circuit.n_free) if i not in out], dtype=int)

    def _histograms(self, hidden: np.ndarray) -> dict:
        hist = {}
        if hidden.size:
            hist["hidden_voltage"] = np.histogram(hidden.ravel(), bins=50)
        for layer in self.dense_layers:
            hist[f"conductance/{layer.name}"] = np.histogram(layer.G.ravel(), bins=50, range=(layer.g_min, layer.g_max))
        return hist

    def predict(self, x, batch_size: int = 4096, engine: str | None = None) -> np.ndarray:
        """Differential outputs y (B, K) in volts; NaN rows did not converge."""
        x, _ = _check_xy(x, None, self.circuit.n_features, self.circuit.n_outputs)
        eng = self.get_engine(engine or getattr(self, "engine_name", "native"))
        return np.concatenate([self.circuit.outputs(eng.solve(self.conductances, x[lo: lo + batch_size]).v)
                               for lo in range(0, len(x), batch_size)]) if len(x) else np.zeros((0, self.circuit.n_outputs))

    def evaluate(self, x, y, batch_size: int = 4096, engine: str | None = None) -> dict:
        self._require_compiled()
        x, y = _check_xy(x, y, self.circuit.n_features, self.circuit.n_outputs)
        out = self.predict(x, batch_size, engine)
        ok = np.all(np.isfinite(out), axis=1)
        cost, _ = self.loss(np.where(ok[:, None], out, 0.0), y)
        return {"loss": float(cost[ok].mean()) if ok.any() else float("nan"),
                "accuracy": float((out[ok].argmax(1) == y[ok]).sum() / max(1, len(y))),
                "nonconverged": int((~ok).sum())}

    # ---- persistence -------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the circuit graph, conductances, optimiser state and training state to a
        folder; `AnalogModel.load` resumes training exactly where it stopped."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        engines, self._engines = self._engines, {}
        try:
            with open(path / "model.pkl", "wb") as fh:
                pickle.dump(self, fh)
        finally:
            self._engines = engines
        np.savez(path / "conductances.npz", **{layer.name: layer.G for layer in self.dense_layers})
        summary = {"name": self.name, "epoch": self.epoch, "vref": self.circuit.vref,
                   "layers": [layer.get_config() for layer in self.dense_layers],
                   "config": self.config,
                   "training": {"beta": getattr(self, "beta", None), "nudging": getattr(self, "nudging", None),
                                "engine": getattr(self, "engine_name", None),
                                "loss": self.loss.get_config() if self.compiled else None,
                                "optimizer": self.optimizer.get_config() if self.compiled else None}}
        (path / "model.json").write_text(json.dumps(summary, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path) -> "AnalogModel":
        path = Path(path)
        file = path / "model.pkl"
        if not file.exists():
            raise FileNotFoundError(f"no saved analog model in {path} (missing {file.name})")
        with open(file, "rb") as fh:
            model = pickle.load(fh)
        if not isinstance(model, cls):
            raise TypeError(f"{file} does not hold an AnalogModel")
        model._engines = {}
        return model

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_engines"] = {}
        return state

    def summary(self) -> str:
        c = self.circuit
        lines = [f"AnalogModel '{self.name}': {c.n_features} features (±) → {c.n_outputs} differential outputs; "
                 f"V_ref={c.vref} V", f"  free nodes {c.n_free}, sources {c.n_sources}, amplifiers {len(c.amp_in)}"]
        for blk in c.dense:
            lines.append(f"  {blk.layer.name}: {blk.layer.G.shape[1]}→{blk.layer.G.shape[0]} crossbar, "
                         f"G∈[{blk.layer.g_min:g}, {blk.layer.g_max:g}] S, energy scale {blk.scale:g}")
        for blk in c.nonlinear:
            lines.append(f"  {blk.layer.name}: {len(blk.node_terms)}× {blk.device!r} {blk.layer.direction}, "
                         f"bias {blk.layer.bias:+g} V")
        return "\n".join(lines)


def make_device(model: str = "shockley", **p) -> Device:
    """A device from config values (keys as in the experiment YAML's analog.diode section)."""
    if model == "shockley":
        return ShockleyDiode(IS=p.get("is", 1e-12), N=p.get("n", 1.0), RS=p.get("rs", 0.0))
    if model == "ideal":
        return IdealDiode(threshold=p.get("threshold", 0.3), r_on=p.get("r_on", 100.0), smoothing=p.get("smoothing", 0.01))
    if model == "mos":
        return MOSDiode(VTO=p.get("threshold", 0.4), KP=p.get("kp", 1e-4), LAMBDA=p.get("lambda", 0.0),
                        W=p.get("w", 1e-6), L=p.get("l", 1e-6))
    raise ValueError(f"analog.diode.model={model!r} must be 'shockley', 'ideal' or 'mos'")


def build_dense_network(features: int, classes: int, hidden=(100,), *, g_min=1e-7, g_max=2e-5, init="uniform",
                        gain=4.0, bias_levels=(1.0, -1.0), device: Device | None = None, up_bias=0.5,
                        down_bias=-0.5, vref=0.0, gmin=1e-12, seed=0, name="analog_block") -> AnalogModel:
    """The EBANA-style block: inputs ± → [crossbar → diodes up/down → amplifier] per hidden
    layer → crossbar → 2·classes output nodes with nudging current sources."""
    device = device or ShockleyDiode()
    x = InputVoltage(features, name="input")
    nodes = x
    for k, units in enumerate(hidden):
        bias = BiasVoltage(list(bias_levels), name=f"bias{k + 1}")
        h = Dense(units, g_min=g_min, g_max=g_max, init=init, seed=seed * 1000 + k, name=f"dense{k + 1}")(
            Concatenate(name=f"concat{k + 1}")([nodes, bias]))
        h = DiodeLayer("up", up_bias, device, name=f"diode_up{k + 1}")(h)
        h = DiodeLayer("down", down_bias, device, name=f"diode_down{k + 1}")(h)
        nodes = Amplification(gain, name=f"amp{k + 1}")(h)
    k = len(hidden)
    bias = BiasVoltage(list(bias_levels), name=f"bias{k + 1}")
    out = Dense(2 * classes, g_min=g_min, g_max=g_max, init=init, seed=seed * 1000 + k, name=f"dense{k + 1}")(
        Concatenate(name=f"concat{k + 1}")([nodes, bias]))
    y = CurrentLayer(name="nudge")(out)
    return AnalogModel(x, y, vref=vref, gmin=gmin, name=name)
