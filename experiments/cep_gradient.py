"""Continual EP against the exact gradient: the accumulated local updates of one nudged
phase (analog/cep.py) on an iris-sized block (4 features → 10 hidden → 3 outputs, 16
samples), for growing per-step learning rates η and step counts K; the cosine to the
exact implicit gradient at the starting conductances, and how far the conductances moved.

    PYTHONPATH=. .venv/bin/python experiments/cep_gradient.py [--betas 1e-7 1e-6] [--etas ...]
"""
import argparse

import numpy as np

from analog.cep import cep_gradients, cosine
from analog.ep import ep_gradients, exact_gradients
from tests.analog_circuits import block, inputs

G_RANGE = (1e-7, 2e-5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--betas", type=float, nargs="+", default=[1e-7, 1e-6])
    ap.add_argument("--etas", type=float, nargs="+", default=[1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 40])
    args = ap.parse_args()
    print("| β (A) | K | η | cosine to exact | largest ΔG / G_max during the phase |")
    print("|---|---|---|---|---|")
    for beta in args.betas:
        m = block(features=4, hidden=(10,), outputs=3, g=G_RANGE)
        m.compile(loss="mse", optimizer="sgd", beta=beta)
        eng, G0 = m.get_engine("native"), [g.copy() for g in m.conductances]
        x, y = inputs(16, 4, scale=1.0), np.arange(16) % 3
        exact = exact_gradients(eng, m.circuit, G0, x, y, m.loss).grads
        ep = ep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric").grads
        print(f"| {beta:g} | EP | – | {cosine(ep, exact):.6f} | 0 |")
        span = G_RANGE[1] - G_RANGE[0]
        for K in args.steps:
            for eta in args.etas:
                G = [g.copy() for g in G0]

                def update(g_t, G=G, eta=eta):
                    for k in range(len(G)):
                        G[k] = np.clip(G[k] - eta * span ** 2 * g_t[k], *G_RANGE)
                    return G
                res = cep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric", steps=K, update=update)
                moved = max(np.abs(a - b).max() for a, b in zip(G, G0)) / G_RANGE[1]
                print(f"| {beta:g} | {K} | {eta:g} | {cosine(res.grads, exact):.4f} | {moved:.2e} |")


if __name__ == "__main__":
    main()
