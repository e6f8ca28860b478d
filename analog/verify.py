"""How good are the EP gradients of a circuit? Compare them with the exact gradient, and
the native engine with ngspice, on a batch of samples (`mixsig verify`)."""
from __future__ import annotations

import numpy as np

from .ep import ep_gradients, exact_gradients


def _compare(estimate: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    a, b = np.ravel(estimate), np.ravel(exact)
    nb = np.linalg.norm(b)
    cos = float(a @ b / (np.linalg.norm(a) * nb)) if nb > 0 and np.linalg.norm(a) > 0 else float("nan")
    return cos, float(np.linalg.norm(a - b) / nb) if nb > 0 else float("nan")


def gradient_report(model, x, labels, beta: float | None = None, ngspice: bool = True,
                    ngspice_options: dict | None = None, chip=None, t: float = 0.0, seed: int = 0) -> dict:
    """Largest native–ngspice node-voltage difference, and per dense layer and for the input
    gradient the cosine similarity and relative error of one-sided and symmetric EP against
    the exact (implicit-differentiation) gradient, at the model's β unless given.

    With `chip` (an `analog.hardware.Chip` programmed from `model`), everything is measured
    on the chip's circuit (varied diodes and amplifiers) with one read of its conductances
    at time `t` (read noise drawn from `seed`), the same read for both engines."""
    model.require_compiled()
    beta = float(beta if beta is not None else model.beta)
    x, labels = np.asarray(x, dtype=float), np.asarray(labels)
    if chip is None:
        circuit, G, owner = model.circuit, model.conductances, model.get_engine
    else:
        circuit, G, owner = chip.circuit, chip.conductances_at(t, rng=np.random.default_rng(seed)), chip.engine
    native = owner("native")
    exact = exact_gradients(native, circuit, G, x, labels, model.loss)
    report: dict = {"samples": int(len(x)), "beta": beta, "layers": {}, "input_gradient": {}}
    if chip is not None:
        report.update(hardware=chip.spec.name, chip_seed=chip.seed, t=float(t), read_seed=int(seed))
    eps = {n: ep_gradients(native, circuit, G, x, labels, model.loss, beta, n, input_grad=True)
           for n in ("symmetric", "positive")}
    for k, layer in enumerate(model.dense_layers):
        row = {}
        for n, tag in (("symmetric", "symmetric"), ("positive", "one_sided")):
            cos, rel = _compare(eps[n].grads[k], exact.grads[k])
            row[f"cos_{tag}"], row[f"rel_err_{tag}"] = cos, rel
        report["layers"][layer.name] = row
    for n, tag in (("symmetric", "symmetric"), ("positive", "one_sided")):
        cos, rel = _compare(eps[n].input_grad, exact.input_grad)
        report["input_gradient"][f"cos_{tag}"], report["input_gradient"][f"rel_err_{tag}"] = cos, rel
    report["nonconverged"] = int((~exact.free.converged).sum())
    if ngspice:
        spice = owner("ngspice", **(ngspice_options or {})).solve(G, x)
        free = exact.free
        ok = spice.converged & free.converged
        report["max_abs_dv"] = float(np.max(np.abs(spice.v[ok] - free.v[ok]))) if ok.any() else float("nan")
        report["max_abs_di"] = float(np.max(np.abs(spice.source_currents[ok] - free.source_currents[ok]))) if ok.any() else float("nan")
        report["ngspice_nonconverged"] = int((~spice.converged).sum())
    else:
        report["max_abs_dv"] = None
    return report
