"""Why C-EP's cosine to the exact gradient falls on the Fashion block (docs/transient.md,
"Where C-EP's cosine limit comes from"): EP's own cosine against β (the finite-β bias and
float precision), C-EP's against η, K and β, per layer, with the diodes conducting or not,
and the measured deviation of C-EP from EP against its first-order prediction.

The predictions (analog.cep.feedback_response, feedback_series) are computed without the
C-EP loop: the free operating point's response M of the EP estimate to the conductances
moving along an update, by a finite difference of two free solves; first order
EP + η (K − 1)/K · M·EP, and the series Σ_{j<K} (K − j)/K (ηM)^j EP in which each step's
update echoes into the next. η ρ ≥ 1 (ρ: the echo's growth per step per unit η) is where the
series diverges.

    PYTHONPATH=. .venv/bin/python experiments/cep_diagnosis.py            # Fashion block
    PYTHONPATH=. .venv/bin/python experiments/cep_diagnosis.py --block iris
"""
import argparse

import numpy as np

from analog.cep import cep_gradients, cosine, feedback_response, feedback_series, sgd_update
from analog.ep import ep_estimate, ep_gradients, exact_gradients
from tests.analog_circuits import block, inputs


def problem(name: str, amplitude: float, samples: int, data: str, train_epochs: int, seed: int = 0):
    """(model, x, labels): the main job's block (experiments/fashion_mnist.yaml, its loss) on
    uniform inputs in ±amplitude V with random labels, or on `mixsig bench`'s stand-in
    embeddings of Fashion-MNIST (an MLP encoder's tanh outputs, × amplitude), after
    `train_epochs` EP epochs with the config's optimiser on 2,000 of them; or the iris-sized
    test block."""
    rng = np.random.default_rng(seed)
    if name == "fashion":
        from pipeline.commands.bench_epoch import main_block, stand_in_embeddings
        m, batch, _ = main_block()
        if data == "uniform":
            return m, rng.uniform(-amplitude, amplitude, (samples, 150)), rng.integers(0, 10, samples)
        x, y, what = stand_in_embeddings(2000, seed)
        print(what)
        x = amplitude * x
        if train_epochs:
            m.fit(x, y, epochs=train_epochs, batch_size=batch, verbose=0)
        return m, x[:samples], y[:samples]
    m = block(features=4, hidden=(10,), outputs=3, g=(1e-7, 2e-5))
    m.compile(loss="mse", optimizer="sgd", beta=1e-6)
    return m, inputs(samples, 4, scale=amplitude), np.arange(samples) % 3


def conducting(m, eng, G, x, y=None, beta: float = 0.0, threshold: float = 0.35) -> float:
    """Fraction of diodes whose forward voltage exceeds `threshold` V at the free point (or,
    with labels y and β > 0, at the +β nudged point)."""
    c = m.circuit
    sol = eng.solve(G, x)
    if beta > 0:
        _, dC_dy = m.loss(c.outputs(sol.v), y)
        sol = eng.solve(G, src=sol.src, nudge=-beta * dC_dy, v0=sol.v)
    V = c.terminal_voltages(sol.v, sol.src)
    on = []
    for blk in c.nonlinear:
        fwd = blk.sign * (V[:, blk.node_terms] - V[:, [blk.ref_term]])
        on.append((fwd > threshold).ravel())
    return float(np.concatenate(on).mean()) if on else 0.0


def run(args):
    m, x, y = problem(args.block, args.amplitude, args.samples, args.data, args.train_epochs)
    eng, G0 = m.get_engine("native"), [g.copy() for g in m.conductances]
    bounds = [(layer.g_min, layer.g_max) for layer in m.dense_layers]
    exact = exact_gradients(eng, m.circuit, G0, x, y, m.loss).grads
    print(f"block {args.block} ({args.data}, {args.train_epochs} EP epochs), {args.samples} samples × {args.amplitude}, diodes conducting "
          f"(> 0.35 V forward): {conducting(m, eng, G0, x):.3f}")
    print("\n| β (A) | EP cosine | " + " | ".join(f"layer {k}" for k in range(len(G0)))
          + " | diodes conducting at +β | largest |Δv| of the nudge (V) |")
    print("|---|---|" + "---|" * len(G0) + "---|---|")
    for beta in args.ep_betas:
        ep = ep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric").grads
        per = " | ".join(f"{cosine([a], [b]):.6f}" for a, b in zip(ep, exact))
        print(f"| {beta:g} | {cosine(ep, exact):.6f} | {per} | {conducting(m, eng, G0, x, y, beta):.3f} | "
              f"{_displacement(m, eng, G0, x, y, beta):.3g} |", flush=True)
    print("\n| β (A) | K | η | η/β | C-EP cosine | " + " | ".join(f"layer {k}" for k in range(len(G0)))
          + " | ‖C-EP − EP‖/‖EP‖ | first-order prediction | series prediction | cosine of the series | series at the nudged points | its cosine | η ρ | largest ΔG / G_max | clipped "
          "| samples kept |")
    print("|---|---|---|---|---|" + "---|" * len(G0) + "---|---|---|---|---|---|---|---|---|---|")
    for beta in args.betas:
        ep = ep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric").grads
        D = feedback_response(eng, m.circuit, G0, x, ep, beta, bounds)
        for K in args.steps:
            for ratio in args.ratios:
                eta = ratio * beta
                G = [g.copy() for g in G0]
                upd = sgd_update(G, eta, bounds, clip=not args.no_clip)
                res = cep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric", steps=K, update=upd)
                dev = _norm([a - b for a, b in zip(res.grads, ep)]) / _norm(ep)
                pred_vec = [b + eta * (K - 1) / K * d for b, d in zip(ep, D)]
                pred = _norm([p - b for p, b in zip(pred_vec, ep)]) / _norm(ep)
                series, rho = feedback_series(eng, m.circuit, G0, x, ep, beta, bounds, eta, K)
                s_dev = _norm([p - b for p, b in zip(series, ep)]) / _norm(ep)
                nudged = nudged_series(m, eng, G0, x, y, beta, bounds, eta, K) if args.nudged else ep
                n_dev = _norm([p - b for p, b in zip(nudged, ep)]) / _norm(ep)
                clipped = sum(int(((g <= lo) | (g >= hi)).sum() - ((g0 <= lo) | (g0 >= hi)).sum())
                              for g, g0, (lo, hi) in zip(G, G0, bounds))
                per = " | ".join(f"{cosine([a], [b]):.4f}" for a, b in zip(res.grads, exact))
                moved = max(np.abs(a - b).max() / hi for a, b, (_, hi) in zip(G, G0, bounds))
                print(f"| {beta:g} | {K} | {eta:g} | {ratio:g} | {cosine(res.grads, exact):.4f} | {per} | "
                      f"{dev:.3g} | {pred:.3g} | {s_dev:.3g} | {cosine(series, exact):.4f} | {n_dev:.3g} | {cosine(nudged, exact):.4f} | {eta * rho:.3g} | {moved:.2g} | {clipped} | {int(res.used.sum())} |", flush=True)


def nudged_series(m, eng, G0, x, y, beta: float, bounds, eta: float, K: int, eps: float = 1e-3):
    """C-EP's accumulated update linearised in the conductance change D_t applied before step
    t, with each step's echo read where C-EP reads it, at its nudged operating point:
    g_t = e_t + R_t(D_t) − R_{t−1}(D_{t−1}), e_t EP's increment between nudge levels t − 1 and
    t at G0, R_t(D) the change of the estimate's ΔV² at level t for a change D (a central
    difference of two nudged solves), D_{t+1} = D_t − η (g_max − g_min)² g_t (no clipping)."""
    c = m.circuit
    free = eng.solve(G0, x)
    _, dC_dy = m.loss(c.outputs(free.v), y)
    levels = [-beta * dC_dy * (2 * t / K - 1) for t in range(K + 1)]     # −β … +β (symmetric)
    w = np.full(len(x), 1.0 / len(x))

    def volts(level, G):
        sol = eng.solve(G, src=free.src, nudge=level, v0=free.v)
        return c.terminal_voltages(sol.v, sol.src)

    def resp(t, D):
        h = eps * max(np.abs(g).max() for g in G0) / max(np.abs(d).max() for d in D)
        Vp, Vm = volts(levels[t], [g + h * d for g, d in zip(G0, D)]), volts(levels[t], [g - h * d for g, d in zip(G0, D)])
        return [r / (2 * h) for r in ep_estimate(eng, G0, Vp, Vm, w, beta, "symmetric")]
    base = [volts(level, G0) for level in levels]
    D, before = [np.zeros_like(g) for g in G0], [np.zeros_like(g) for g in G0]
    total = [np.zeros_like(g) for g in G0]
    for t in range(1, K + 1):
        now = resp(t, D) if t > 1 else [np.zeros_like(g) for g in G0]
        e_t = ep_estimate(eng, G0, base[t], base[t - 1], w, beta, "symmetric")
        g_t = [e + a - b for e, a, b in zip(e_t, now, before)]
        total = [a + g for a, g in zip(total, g_t)]
        D = [d - eta * (hi - lo) ** 2 * g for d, g, (lo, hi) in zip(D, g_t, bounds)]
        before = now
    return total


def _displacement(m, eng, G, x, y, beta: float) -> float:
    free = eng.solve(G, x)
    _, dC_dy = m.loss(m.circuit.outputs(free.v), y)
    return float(np.abs(eng.solve(G, src=free.src, nudge=-beta * dC_dy, v0=free.v).v - free.v).max())


def _norm(a_list) -> float:
    return float(np.sqrt(sum(np.sum(np.square(a)) for a in a_list)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", choices=["fashion", "iris"], default="fashion")
    ap.add_argument("--amplitude", type=float, default=1.0, help="inputs uniform in ± this (V)")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--data", choices=["uniform", "fashion"], default="fashion", help="the Fashion block's inputs")
    ap.add_argument("--train-epochs", type=int, default=0, help="EP epochs on the embeddings first")
    ap.add_argument("--ep-betas", type=float, nargs="*", default=[1e-9, 1e-7, 1e-5, 1e-3, 1e-2])
    ap.add_argument("--betas", type=float, nargs="+", default=[1e-5])
    ap.add_argument("--ratios", type=float, nargs="+", default=[1e2, 1e3, 3e3, 1e4], help="η/β (1/A)")
    ap.add_argument("--steps", type=int, nargs="+", default=[10])
    ap.add_argument("--nudged", action="store_true", help="also the series with the echo read at the nudged points")
    ap.add_argument("--no-clip", action="store_true", help="let conductances leave [g_min, g_max]")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
