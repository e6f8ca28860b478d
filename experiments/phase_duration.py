"""What a cut-short phase costs: EP with the free and nudged phases cut at t (transients,
analog.training_energy.cut_short_gradients) on the iris block, against EP at the operating
points: the gradient's cosine to the exact gradient over a grid of (free, nudged) durations,
and the test accuracy after training with both phases cut at t (read at the DC operating
point, and read at t). Writes the table and a plot (docs/transient.md).

    PYTHONPATH=. .venv/bin/python experiments/phase_duration.py [--epochs 40] [--no-grid] [--pairs 5,1000 ...] [--plot experiments/phase_duration.png]
"""
import argparse
import time

import numpy as np

from analog.builders import build_dense_network
from analog.capacitance import node_capacitance
from analog.cep import cosine
from analog.ep import ep_gradients, exact_gradients
from analog.optimizers import Adam
from analog.training_energy import cut_short_gradients


def iris(seed=0):
    """Standardised features halved and clipped to ±1 V; a stratified 80/20 split."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    d = load_iris()
    z = (d.data - d.data.mean(0)) / d.data.std(0)
    x = np.clip(z / 2.0, -1.0, 1.0)
    return train_test_split(x, d.target, test_size=0.2, stratify=d.target, random_state=seed)


def block(beta, lr):
    m = build_dense_network(4, 3, hidden=(20,), g_min=1e-7, g_max=2e-5, gain=4.0, up_bias=-0.3, down_bias=0.3, seed=0)
    m.compile("mse", Adam(lr), beta=beta, nudging="symmetric")
    return m


def cosine_grid(m, x, y, durations, steps):
    eng, c, G = m.get_engine("native"), m.circuit, m.conductances
    C = node_capacitance(c)
    exact = exact_gradients(eng, c, G, x, y, m.loss).grads
    ep = cosine(ep_gradients(eng, c, G, x, y, m.loss, m.beta, "symmetric").grads, exact)
    grid = np.zeros((len(durations), len(durations)))
    for i, tf in enumerate(durations):
        for j, tn in enumerate(durations):
            g = cut_short_gradients(eng, C, G, x, y, m.loss, m.beta, tf, tn, steps=steps).grads
            grid[i, j] = cosine(g, exact)
    return grid, ep


def train(m, xtr, ytr, xte, yte, t, epochs, batch, steps, seed=0, t_nudged=None):
    """Train with the free phase cut at t and the nudged ones at t_nudged (default t; t None:
    EP at the operating points); returns test accuracy read at the operating point and read at t."""
    t_nudged = t if t_nudged is None else t_nudged
    eng, c = m.get_engine("native"), m.circuit
    C = node_capacitance(c)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(xtr))
        for lo in range(0, len(order), batch):
            idx = order[lo: lo + batch]
            if t is None:
                g = ep_gradients(eng, c, m.conductances, xtr[idx], ytr[idx], m.loss, m.beta, "symmetric").grads
            else:
                g = cut_short_gradients(eng, C, m.conductances, xtr[idx], ytr[idx], m.loss, m.beta, t, t_nudged,
                                        steps=steps).grads
            m.optimizer.apply(m.dense_layers, g)
    acc_dc = m.accuracy(xte, yte)
    if t is None:
        return acc_dc, acc_dc
    read = cut_short_gradients(eng, C, m.conductances, xte, yte, m.loss, m.beta, t, t, steps=steps).y
    return acc_dc, float((read.argmax(1) == yte).mean())


def plot(durations, grids, train_t, accs, ep_acc, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ps = np.array(durations) * 1e12
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for (state, grid, _), color in zip(grids, ("C0", "C3")):
        a.semilogx(ps, np.diag(grid), "o-", color=color, label=f"both phases cut at t ({state})")
        a.semilogx(ps, grid[:, -1], "s--", color=color, label=f"free phase cut at t, nudged {ps[-1]:.0f} ps")
        a.semilogx(ps, grid[-1, :], "^:", color=color, label=f"nudged phases cut at t, free {ps[-1]:.0f} ps")
    a.axhline(1.0, color="k", lw=0.8)
    a.set_xlabel("phase duration t (ps)")
    a.set_ylabel("cosine to the exact gradient")
    a.legend(fontsize=7)
    tp = np.array(train_t) * 1e12
    b.semilogx(tp, [r[0] for r in accs], "o-", label="read at the operating point")
    b.semilogx(tp, [r[1] for r in accs], "s--", label="read at t")
    b.axhline(ep_acc, color="k", lw=0.8, label=f"EP at the operating points ({ep_acc:.3f})")
    b.set_xlabel("phase duration t, both phases (ps)")
    b.set_ylabel("iris test accuracy")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--durations", type=float, nargs="+", default=[5, 10, 20, 50, 100, 200, 500, 1000, 2000],
                    help="phase durations for the cosine grid, ps")
    ap.add_argument("--train-durations", type=float, nargs="*", default=[5, 10, 20, 50, 100, 200, 500, 1000],
                    help="ps, both phases")
    ap.add_argument("--pairs", nargs="*", default=["5,1000", "1000,5", "1000,50"],
                    help="further trainings with the free and nudged phases cut at different times: 'free,nudged' in ps")
    ap.add_argument("--no-grid", action="store_true", help="skip the cosine grid (and the plot)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--beta", type=float, default=1e-7)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=50, help="time steps per phase")
    ap.add_argument("--plot", default="experiments/phase_duration.png")
    args = ap.parse_args()
    xtr, xte, ytr, yte = iris()
    durations = [d * 1e-12 for d in args.durations]
    if not args.no_grid:
        args.grids = [grid_table(block(args.beta, args.lr), args, xtr, ytr, durations, "initial conductances")]
    trained = block(args.beta, args.lr)
    ep_acc = train(trained, xtr, ytr, xte, yte, None, args.epochs, args.batch, args.steps)[0]
    print(f"\nEP at the operating points: test accuracy {ep_acc:.3f}")
    if not args.no_grid:
        args.grids.append(grid_table(trained, args, xtr, ytr, durations, "after EP training"))
    print("| free phase cut at (ps) | nudged phases cut at (ps) | test accuracy, read at the operating point | read at t | s |")
    print("|---|---|---|---|---|")
    accs = []
    for pair in [(d, d) for d in args.train_durations] + [tuple(float(v) for v in p.split(",")) for p in args.pairs]:
        t1 = time.perf_counter()
        accs.append(train(block(args.beta, args.lr), xtr, ytr, xte, yte, pair[0] * 1e-12, args.epochs, args.batch,
                          args.steps, t_nudged=pair[1] * 1e-12))
        print(f"| {pair[0]:g} | {pair[1]:g} | {accs[-1][0]:.3f} | {accs[-1][1]:.3f} | {time.perf_counter() - t1:.0f} |",
              flush=True)
    if not args.no_grid and args.plot:
        n = len(args.train_durations)
        plot(durations, args.grids, [d * 1e-12 for d in args.train_durations], accs[:n], ep_acc, args.plot)
        print(f"plot: {args.plot}")


def grid_table(m, args, xtr, ytr, durations, state):
    t0 = time.perf_counter()
    grid, ep_cos = cosine_grid(m, xtr[:32], ytr[:32], durations, args.steps)
    print(f"\ncosine to the exact gradient (32 training samples, {state}); EP at the operating points "
          f"{ep_cos:.6f}; {time.perf_counter() - t0:.0f} s")
    print("| free \\ nudged (ps) | " + " | ".join(f"{d:g}" for d in args.durations) + " |")
    print("|---" * (len(durations) + 1) + "|")
    for d, row in zip(args.durations, grid):
        print(f"| {d:g} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    return state, grid, ep_cos


if __name__ == "__main__":
    main()
