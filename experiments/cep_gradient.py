"""Continual EP against the exact gradient: the accumulated local updates of one nudged
phase (analog/cep.py) on an iris-sized block (4 features → 10 hidden → 3 outputs, 16
samples), or on a saved block and its embeddings (--model, --embeddings: the first
--samples training embeddings), for growing per-step learning rates η and step counts K;
the cosine to the exact implicit gradient at the starting conductances, and how far the
conductances moved.

    PYTHONPATH=. .venv/bin/python experiments/cep_gradient.py [--betas 1e-7 1e-6] [--etas ...]
    PYTHONPATH=. .venv/bin/python experiments/cep_gradient.py --model runs/RUN/analog_model \
        --embeddings runs/RUN/embeddings/embeddings.npz --betas 1e-5 --etas 0.01 0.1 --steps 10
"""
import argparse

import numpy as np

import analog.layers as L
from analog.cep import cep_gradients, cosine
from analog.devices import ShockleyDiode
from analog.ep import ep_gradients, exact_gradients
from analog.model import AnalogModel

G_RANGE = (1e-7, 2e-5)


def iris_block(features=4, hidden=10, outputs=3):
    """Inputs → [crossbar → Shockley diodes at ∓0.3 V → amplifier ×3] → crossbar → 2·outputs
    nodes, conductances in G_RANGE (the block the recorded figures were measured on)."""
    device, g = ShockleyDiode(RS=10.0), dict(g_min=G_RANGE[0], g_max=G_RANGE[1])
    x = L.InputVoltage(features)
    h = L.Dense(hidden, seed=0, **g)(L.Concatenate()([x, L.BiasVoltage([1.0, -1.0])]))
    h = L.Amplification(3.0)(L.DiodeLayer("down", 0.3, device)(L.DiodeLayer("up", -0.3, device)(h)))
    out = L.Dense(2 * outputs, seed=99, **g)(L.Concatenate()([h, L.BiasVoltage([1.0, -1.0])]))
    return AnalogModel(x, L.CurrentLayer()(out))


def problem(args, beta):
    """(model, x, labels): the iris-sized test block (MSE loss), or the saved block with
    its own loss; β is passed to the gradient functions directly."""
    if args.model is not None:
        m = AnalogModel.load(args.model)
        with np.load(args.embeddings) as d:
            return m, d["x_train"][:args.samples], d["y_train"][:args.samples]
    m = iris_block()
    m.compile(loss="mse", optimizer="sgd", beta=beta)
    return m, np.random.default_rng(0).uniform(-1.0, 1.0, (16, 4)), np.arange(16) % 3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--betas", type=float, nargs="+", default=[1e-7, 1e-6])
    ap.add_argument("--etas", type=float, nargs="+", default=[1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--model", help="a saved analog model folder (runs/RUN/analog_model)")
    ap.add_argument("--embeddings", help="embeddings.npz of that block's inputs (with --model)")
    ap.add_argument("--samples", type=int, default=64, help="training embeddings used (with --model)")
    args = ap.parse_args()
    if (args.model is None) != (args.embeddings is None):
        ap.error("--model and --embeddings go together")
    print("| β (A) | K | η | cosine to exact | largest ΔG / G_max during the phase |")
    print("|---|---|---|---|---|")
    for beta in args.betas:
        m, x, y = problem(args, beta)
        eng, G0 = m.get_engine("native"), [g.copy() for g in m.conductances]
        bounds = [(layer.g_min, layer.g_max) for layer in m.dense_layers]
        exact = exact_gradients(eng, m.circuit, G0, x, y, m.loss).grads
        ep = ep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric").grads
        print(f"| {beta:g} | EP | – | {cosine(ep, exact):.6f} | 0 |")
        g_max = max(hi for _, hi in bounds)
        for K in args.steps:
            for eta in args.etas:
                G = [g.copy() for g in G0]

                def update(g_t, G=G, eta=eta):
                    for k, (lo, hi) in enumerate(bounds):
                        G[k] = np.clip(G[k] - eta * (hi - lo) ** 2 * g_t[k], lo, hi)
                    return G
                res = cep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric", steps=K, update=update)
                moved = max(np.abs(a - b).max() for a, b in zip(G, G0)) / g_max
                print(f"| {beta:g} | {K} | {eta:g} | {cosine(res.grads, exact):.4f} | {moved:.2e} |", flush=True)


if __name__ == "__main__":
    main()
