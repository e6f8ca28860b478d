"""AnalogModel: a compiled circuit with a Keras-like training API (compile / fit / evaluate /
predict / save / load), trained by Equilibrium Propagation on either engine.

An AnalogModel is an `analog.block.Block`, like a programmed chip; the accuracy rule and the
choice between EP and exact gradients are shared with the chip there.

Non-converged samples (one rule for every metric, in `fit`, `evaluate` and `scores`): a
sample counts as non-converged when its free-phase (inference) solve did not converge. It
counts as *wrong* in the accuracy, which is taken over all samples; the loss and the mean
power are means over the converged samples only; `nonconverged` (count) and
`nonconverged_fraction` are reported beside them, so a loss that looks good on few samples
is never mistaken for a good block.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .block import GRADIENT_METHODS, batch_outputs, block_gradients, score_outputs
from .circuit import CompiledCircuit, compile_circuit
from .ep import GradientResult, ep_gradients
from .layers import Dense, Nodes
from .losses import Loss, get_loss
from .engine_cache import cached_engine
from .native import total_energy
from .history import History
from .optimizers import Optimizer, get_optimizer
from .solution import Solution

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
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        self.beta, self.nudging = None, None        # float, str once compiled
        self.gradient, self.algorithm, self.cep_steps = "ep", "ep", 10
        self.engine_name, self.engine_options = "native", {}
        self.perturbation = self.phases = None
        self.epoch, self.history = 0, History()
        self.config: dict = {}

    # ---- circuit access ---------------------------------------------------------------
    @property
    def conductances(self) -> list[np.ndarray]:
        return [layer.G for layer in self.dense_layers]

    def set_conductances(self, G_list) -> None:
        """Replace every dense layer's conductances. All arrays are checked (count, shape,
        finite, inside [g_min, g_max]) before any is written: on error nothing changes."""
        G_list = list(G_list)
        if len(G_list) != len(self.dense_layers):
            raise ValueError(f"{len(G_list)} conductance arrays for {len(self.dense_layers)} dense layers")
        checked = []
        for layer, G in zip(self.dense_layers, G_list):
            try:
                G = np.array(G, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f"conductances of layer '{layer.name}' are not a numeric array") from None
            if G.shape != layer.G.shape:
                raise ValueError(f"conductances of layer '{layer.name}' have shape {G.shape}, expected {layer.G.shape}")
            if not np.all(np.isfinite(G)):
                i = tuple(int(k) for k in np.argwhere(~np.isfinite(G))[0])
                raise ValueError(f"conductances of layer '{layer.name}' are not finite (first at {i})")
            if G.min() < layer.g_min or G.max() > layer.g_max:
                raise ValueError(f"conductances of layer '{layer.name}' span [{G.min():g}, {G.max():g}] S, "
                                 f"outside the device range [{layer.g_min:g}, {layer.g_max:g}]")
            checked.append(G)
        for layer, G in zip(self.dense_layers, checked):
            layer.set_conductances(G)

    def get_engine(self, kind: str | None = None, **options):
        """The engine `kind` ('native', 'ngspice', 'ngspice-rebuild') with these options,
        created once and cached (options may be nested dicts)."""
        return cached_engine(self._engines, self.circuit, kind or self.engine_name, **options)

    @property
    def engine(self):
        """The engine `compile` chose, with its options."""
        return self.get_engine(self.engine_name, **self.engine_options)

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
                engine: str = "native", engine_options: dict | None = None, perturbation=None,
                gradient: str = "ep", algorithm: str = "ep", cep_steps: int = 10, phases=None, **loss_options):
        """Choose the cost, the optimiser (name or `Optimizer` object), the nudging strength β
        (A per unit of ∂C/∂y), symmetric or one-sided nudging, the training engine and its
        options, and optionally a `perturbation` (an object with `perturb(G_list, layers, rng)
        -> G_list`, e.g. `analog.hardware.NoiseInjection`): `fit` then runs each mini-batch's
        EP solves on perturbed conductances and applies the update to the stored ones.
        `gradient`: what `fit` steps along, 'ep' (the EP estimate) or 'exact' (the implicit
        gradient at the free operating point, native engine only: what EP would reach if its
        estimate were perfect; a sample that does not converge stops training with an error).
        `algorithm`: "ep", or "c-ep" (continual EP, analog/cep.py: the update applied in
        `cep_steps` steps during the nudged phase; plain SGD only). `phases`: `gradients(model,
        G_list, x, labels)` in place of the EP estimate, e.g. `analog.training_energy.PhaseCut`."""
        if algorithm not in ("ep", "c-ep"):
            raise ValueError(f"training.algorithm={algorithm!r} must be 'ep' or 'c-ep'")
        if not (isinstance(cep_steps, (int, np.integer)) and cep_steps >= 1):
            raise ValueError(f"training.cep_steps={cep_steps!r} must be an integer >= 1")
        if algorithm == "c-ep" and gradient == "exact":
            raise ValueError("training.algorithm='c-ep' follows its own local rule; it cannot be combined with "
                             "training.gradient='exact'")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta={beta!r} must be a finite number > 0 (amperes per unit of dC/dy)")
        if nudging not in ("symmetric", "positive"):
            raise ValueError(f"nudging={nudging!r} must be 'symmetric' or 'positive'")
        if engine not in ("native", "ngspice"):
            raise ValueError(f"engine={engine!r} must be 'native' or 'ngspice'")
        if gradient not in ("ep", "exact"):
            raise ValueError(f"gradient={gradient!r} must be 'ep' or 'exact'")
        if gradient == "exact" and engine != "native":
            raise ValueError(f"gradient='exact' is computed on the native engine; engine={engine!r} trains by EP only")
        if engine_options is not None and not isinstance(engine_options, dict):
            raise ValueError(f"engine_options must be a dict, got {type(engine_options).__name__}")
        for obj, name, method in ((perturbation, "perturbation", "perturb"), (phases, "phases", "gradients")):
            if obj is not None and not callable(getattr(obj, method, None)):
                raise TypeError(f"{name} must have a {method}(...) method, got {type(obj).__name__}")
        if phases is not None and (algorithm, gradient) != ("ep", "ep"):
            raise ValueError("phases replace the EP estimate: use them with algorithm='ep' and gradient='ep'")
        self.loss = get_loss(loss, **loss_options)
        self.optimizer = get_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
        if not isinstance(self.optimizer, Optimizer):
            raise TypeError(f"optimizer must be a name or an analog.optimizers.Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.beta, self.nudging, self.engine_name = float(beta), nudging, engine
        self.engine_options = dict(engine_options or {})
        self.perturbation, self.phases, self.gradient = perturbation, phases, gradient
        if algorithm == "c-ep" and type(self.optimizer).__name__ != "SGD":
            raise ValueError(f"training.algorithm='c-ep' applies its local rule as plain SGD steps during the "
                             f"nudged phase; training.optimizer.name must be 'sgd' (got "
                             f"'{type(self.optimizer).__name__.lower()}')")
        self.algorithm, self.cep_steps = algorithm, int(cep_steps)
        self.compiled = True
        return self

    def require_compiled(self) -> None:
        if not self.compiled:
            raise RuntimeError("call model.compile(loss=..., optimizer=..., beta=...) first")

    def gradients(self, x, labels, method: str = "ep", input_grad: bool = False, loss=None, *,
                  nudging: str | None = None, beta: float | None = None, engine: str | None = None) -> GradientResult:
        """EP estimate (method='ep', on the training engine unless `engine` is given) or the
        exact implicit gradient (method='exact', native engine; always with ∂C/∂x), of the
        compiled cost or of `loss` (a Loss or its name) when given (`analog.block.Block`)."""
        self.require_compiled()
        if method not in GRADIENT_METHODS:
            raise ValueError(f"method={method!r} must be 'ep' or 'exact'")
        x, labels = _check_xy(x, labels, self.circuit.n_features, self.circuit.n_outputs)
        cost = self.loss if loss is None else get_loss(loss)
        eng = self.get_engine(engine) if engine else self.engine
        native = self.get_engine("native") if method == "exact" else None
        return block_gradients(eng, native, self.circuit, self.conductances, x, labels, cost,
                               method=method, beta=beta if beta is not None else self.beta,
                               nudging=nudging or self.nudging, input_grad=input_grad)

    def input_gradient(self, x, labels, method: str = "ep") -> tuple[np.ndarray, np.ndarray]:
        """∂C/∂x per sample (B, n_features) and the per-sample cost; NaN rows did not converge."""
        res = self.gradients(x, labels, method=method, input_grad=True)
        return res.input_grad, res.loss

    def _training_conductances(self, seed: int, epoch: int, batch: int) -> list[np.ndarray]:
        """The conductances a mini-batch's EP solves see: the stored ones (read-only views),
        or a fresh perturbation of them drawn from a generator seeded by (seed, epoch, batch),
        so a resumed run draws the same perturbations."""
        G = []
        for g in self.conductances:
            view = g.view()
            view.flags.writeable = False
            G.append(view)
        if self.perturbation is None:
            return G
        out = list(self.perturbation.perturb(G, self.dense_layers, np.random.default_rng([seed, epoch, batch, 7])))
        if len(out) != len(G) or any(np.shape(a) != b.shape for a, b in zip(out, G)):
            raise ValueError(f"{type(self.perturbation).__name__}.perturb returned arrays of shapes "
                             f"{[np.shape(a) for a in out]}, expected {[b.shape for b in G]}")
        return out

    def _step_gradients(self, G, x, labels) -> GradientResult:
        """The gradient one training step follows (`compile(gradient=..., phases=...)`)."""
        if self.phases is not None:
            return self.phases.gradients(self, G, x, labels)
        native = self.get_engine("native") if self.gradient == "exact" else None
        return block_gradients(self.engine, native, self.circuit, G, x, labels, self.loss,
                               method=self.gradient, beta=self.beta, nudging=self.nudging, input_grad=False)

    def _cep_batch(self, x, y, tot):
        """One C-EP mini-batch: the optimiser (SGD) applies each of the nudged phase's local
        updates as it happens (analog/cep.py)."""
        from .cep import cep_gradients

        def update(g_t):
            tot["clipped"] += self.optimizer.apply(self.dense_layers, g_t)
            return self.conductances
        return cep_gradients(self.engine, self.circuit, self.conductances, x, y, self.loss, self.beta,
                             self.nudging, self.cep_steps, update)

    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, validation_data=None, callbacks=(),
            verbose: int = 1, shuffle: bool = True, seed: int = 0) -> History:
        """Train by EP (or along the exact gradient, see `compile`) for `epochs` more epochs
        (continues from `self.epoch`, so a saved and reloaded model resumes exactly). Returns
        the history (also kept on the model).

        Logs per epoch: loss, accuracy, power_mean (by the module's non-convergence rule,
        on the conductances the EP solves saw), nonconverged, nonconverged_fraction,
        ep_skipped (samples left out of the update: some EP phase failed), clipped,
        epoch_seconds, samples_per_second, and val_* from `scores` on validation data."""
        self.require_compiled()
        if self.optimizer is None:
            raise RuntimeError("this model has no optimiser (its file could not hold it, see model.not_saved): "
                               "call model.compile(...) before fit")
        x, y = _check_xy(x, y, self.circuit.n_features, self.circuit.n_outputs)
        if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        if validation_data is not None:
            validation_data = _check_xy(*validation_data, self.circuit.n_features, self.circuit.n_outputs,
                                        where="validation x")
        for cb in callbacks:
            cb.on_train_begin(self)
        hidden_free = self._hidden_nodes()
        start = self.epoch
        for epoch in range(start, start + epochs):
            logs, hidden = self._train_epoch(x, y, epoch, start + epochs, batch_size, shuffle, seed, verbose,
                                             hidden_free)
            if validation_data is not None:
                val = self.scores(*validation_data)
                logs.update({f"val_{k}": val[k] for k in ("loss", "accuracy", "nonconverged")})
            self.epoch = epoch + 1
            self.history.append(epoch, logs, self._histograms(hidden))
            if verbose:
                print(f"epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4g}" for k, v in logs.items()), flush=True)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs, self)
        for cb in callbacks:
            cb.on_train_end(self)
        return self.history

    def _train_epoch(self, x, y, epoch: int, last: int, batch_size: int, shuffle: bool, seed: int, verbose: int,
                     hidden_free: np.ndarray) -> tuple[dict, np.ndarray]:
        """One epoch of mini-batch steps: its logs (without val_*) and a sample of the
        hidden-node voltages (at most about 4,000 samples) for the histograms."""
        from .progress import progress
        self.optimizer.epoch = epoch
        order = np.random.default_rng([seed, epoch]).permutation(len(x)) if shuffle else np.arange(len(x))
        t0 = time.perf_counter()
        tot = dict(loss=0.0, correct=0, ok=0, skipped=0, clipped=0, power=0.0)
        hidden_sample, n_hidden = [], 0
        # off a terminal the epoch's own line is its progress
        bar = progress(len(x), f"epoch {epoch + 1}/{last}", "sample", enabled=bool(verbose),
                       every=None, final=False, leave=verbose > 1 or epoch == last - 1)
        for b, lo in enumerate(range(0, len(x), batch_size)):
            idx = order[lo: lo + batch_size]
            res = self._train_batch(x[idx], y[idx], seed, epoch, b, tot)
            ok = res.free.converged
            if n_hidden < 4000 and ok.any():
                hidden_sample.append(res.free.v[ok][:, hidden_free])
                n_hidden += len(hidden_sample[-1])
            if verbose:
                bar.update(len(idx))
                bar.set_postfix(loss=f"{tot['loss'] / max(1, tot['ok']):.4f}",
                                acc=f"{tot['correct'] / (lo + len(idx)):.3f}")
        bar.close()
        n_ok, seconds = tot["ok"], time.perf_counter() - t0
        logs = {"loss": tot["loss"] / n_ok if n_ok else float("nan"),
                "accuracy": tot["correct"] / max(1, len(x)),
                "power_mean": tot["power"] / n_ok if n_ok else float("nan"),
                "nonconverged": len(x) - n_ok, "nonconverged_fraction": (len(x) - n_ok) / max(1, len(x)),
                "ep_skipped": tot["skipped"], "clipped": tot["clipped"],
                "epoch_seconds": seconds, "samples_per_second": len(x) / max(1e-9, seconds)}
        return logs, (np.concatenate(hidden_sample) if hidden_sample else np.zeros((0, 0)))

    def _train_batch(self, x, y, seed: int, epoch: int, b: int, tot: dict) -> GradientResult:
        """One mini-batch: the gradient step (or C-EP's updates), its figures added to `tot`."""
        if self.algorithm == "c-ep":
            res = self._cep_batch(x, y, tot)
        else:
            res = self._step_gradients(self._training_conductances(seed, epoch, b), x, y)
            if res.used.any():
                tot["clipped"] += self.optimizer.apply(self.dense_layers, res.grads)
        tot["skipped"] += int((~res.used).sum())
        ok = res.free.converged
        tot["loss"] += float(res.loss[ok].sum())
        tot["correct"] += int((res.y[ok].argmax(1) == y[ok]).sum())
        tot["ok"] += int(ok.sum())
        tot["power"] += float(res.free.power[ok].sum())
        return res

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

    # ---- inference -------------------------------------------------------------------------
    def _solve_batches(self, x, batch_size: int, engine: str | None):
        eng = self.get_engine(engine) if engine else self.engine
        return batch_outputs(lambda xb: eng.solve(self.conductances, xb), self.circuit, x, batch_size)

    def predict(self, x, batch_size: int = 4096, engine: str | None = None) -> np.ndarray:
        """Differential outputs y (B, K) in volts; NaN rows did not converge."""
        x, _ = _check_xy(x, None, self.circuit.n_features, self.circuit.n_outputs)
        return self._solve_batches(x, batch_size, engine)[0]

    def scores(self, x, y, batch_size: int = 4096, engine: str | None = None) -> dict:
        """accuracy (over all samples, a non-converged one counts as wrong), loss and
        power_mean (means over the converged samples; NaN if none converged), nonconverged,
        nonconverged_fraction and samples, on the stored conductances."""
        self.require_compiled()
        x, y = _check_xy(x, y, self.circuit.n_features, self.circuit.n_outputs)
        return score_outputs(*self._solve_batches(x, batch_size, engine), y, self.loss)

    def accuracy(self, x, y, batch_size: int = 4096, engine: str | None = None) -> float:
        """Accuracy over all samples, a non-converged one counting as wrong (needs no cost)."""
        x, y = _check_xy(x, y, self.circuit.n_features, self.circuit.n_outputs)
        return score_outputs(*self._solve_batches(x, batch_size, engine), y)["accuracy"]

    def evaluate(self, x, y, batch_size: int = 4096, engine: str | None = None) -> dict:
        """loss, accuracy, nonconverged (as `scores`, by the module's non-convergence rule)."""
        s = self.scores(x, y, batch_size, engine)
        return {k: s[k] for k in ("loss", "accuracy", "nonconverged", "nonconverged_fraction")}

    # ---- persistence -------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write model.json (layer graph, devices, options, training state) and arrays.npz
        (conductances, optimiser state, histograms) to a folder; no pickle. `AnalogModel.load`
        rebuilds the model and resumes training exactly where it stopped."""
        from .persistence import save_model
        return save_model(self, path)

    @classmethod
    def load(cls, path) -> "AnalogModel":
        from .persistence import load_model
        return load_model(path, cls)

    def summary(self) -> str:
        c = self.circuit
        lines = [f"AnalogModel '{self.name}': {c.n_features} features (±) → {c.n_outputs} differential outputs; "
                 f"V_ref={c.vref} V", f"  free nodes {c.n_free}, sources {c.n_sources}, amplifiers {len(c.amp_in)}"]
        for blk in c.dense:
            kind = "crossbar" if blk.cols is None else f"locally connected ({blk.cols.shape[1]} per row)"
            lines.append(f"  {blk.layer.name}: {len(blk.in_terms)}→{blk.layer.G.shape[0]} {kind}, "
                         f"G∈[{blk.layer.g_min:g}, {blk.layer.g_max:g}] S, energy scale {np.mean(blk.scale):g}")
        for blk in c.nonlinear:
            lines.append(f"  {blk.layer.name}: {len(blk.node_terms)}× {blk.device!r} {blk.layer.direction}, "
                         f"bias {blk.layer.bias:+g} V")
        return "\n".join(lines)
