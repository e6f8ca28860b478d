"""EP vs backprop behind the PCA encoder (issue 13 part 5): one ablation = one function call.

    .venv/bin/python experiments/pca_gap.py embed                 # PCA embeddings → OUT/*.npy (once)
    .venv/bin/python experiments/pca_gap.py run --name base       # the main job's block settings
    .venv/bin/python experiments/pca_gap.py run --name lr3 --set lr=0.003 --set epochs=8
    .venv/bin/python experiments/pca_gap.py baseline --name bp    # the in-run Keras baseline
    .venv/bin/python experiments/pca_gap.py surrogate --set upper=10   # the block's parametrisation by backprop
    .venv/bin/python experiments/pca_gap.py surrogate --set upper=10 --set save=S.npz
    .venv/bin/python experiments/pca_gap.py run --set g_max=2e-4 --set epochs=0 --set init_from=S.npz   # that, in the circuit
    .venv/bin/python experiments/pca_gap.py run --set diode_model=ideal --set up_bias=-0.25 --set down_bias=0.25
    .venv/bin/python experiments/pca_gap.py table                 # markdown table of OUT/results.jsonl

OUT is $PCA_GAP_OUT (default /tmp/team/pca-gap). `--train N` trains on a stratified slice of
N training embeddings (the full 10,000-image test set is always used); `--emb NAME` reads
NAME_x_{train,val,test}.npy instead of the PCA ones (e.g. CNN embeddings saved by `embed-run`).
Every run appends one JSON line (settings, test/train accuracy, seconds, diagnostics of the
hidden layer, where the conductances sit) to OUT/results.jsonl. `run --set save=G.npz` keeps
the trained conductances; `--set init_from=G.npz` (or a surrogate's S.npz) starts from them,
and with `--set epochs=0` only tests them (e.g. with `--set diode_is=1e-30`: diodes removed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(os.environ.get("PCA_GAP_OUT", "/tmp/team/pca-gap"))

#: the main job's block and training settings (experiments/fashion_mnist.yaml)
DEFAULTS = dict(hidden=100, epochs=4, lr=0.01, schedule="cosine", optimizer="adam", batch=64, beta=1e-6,
                nudging="symmetric", loss="mse", amplitude=0.5, midpoint=0.0, temperature=1.0,
                g_min=1e-7, g_max=2e-5, init="uniform", gain=4.0, up_bias=-0.3, down_bias=0.3,
                bias_levels=(1.0, -1.0), diode_is=1e-12, input_scale=1.0, input_clip=1.0, features="pca",
                seed=0, lr_out=1.0, grad="ep", init_from=None, save=None,
                init_frac=None, diode_n=1.0, diode_rs=0.0, diode_model="shockley", diode_threshold=0.3,
                diode_r_on=100.0, diode_smoothing=0.01)


# ------------------------------------------------------------------------------ data
def embed(out: Path = OUT) -> None:
    """Fit the PCA encoder (150 components, ±3σ → ±1 V) on the 54,000 training images of
    the main job's split (seed 0) and save the embeddings, the unclipped volts and labels."""
    from digital import PCAEncoder
    from digital.base import prepare_images
    from pipeline.data import load_dataset
    out.mkdir(parents=True, exist_ok=True)
    d = load_dataset({"dataset": "fashion_mnist", "validation_fraction": 0.1}, seed=0)
    enc = PCAEncoder(embedding_dim=150, seed=0).fit(d.x_train, d.y_train, verbose=1)
    for split in ("train", "val", "test"):
        x = getattr(d, f"x_{split}")
        np.save(out / f"pca_x_{split}.npy", enc.embed(x))
        np.save(out / f"pca_raw_{split}.npy", enc._embed(prepare_images(x)))   # before clipping
        np.save(out / f"y_{split}.npy", getattr(d, f"y_{split}"))
    # the standard deviation of each principal component (volts = z / (3 σ)): ‖W column‖ = 1/(3σ)
    np.save(out / "pca_sigma.npy", 1.0 / (3.0 * np.linalg.norm(enc.W_, axis=0)))
    print(f"PCA head (logistic regression on the volts): test {enc.evaluate(d.x_test, d.y_test):.4f}")


def load(emb: str = "pca", train: int | None = None, features: str = "pca", input_scale: float = 1.0,
         input_clip: float = 1.0, seed: int = 0):
    """(x_train, y_train, x_test, y_test). features: 'pca' (the encoder's volts: every
    component standardised, ±3σ → ±1 V, clipped), 'raw' (the same, unclipped before the
    scaling below), 'unwhitened' (components keep their relative variance: the first spans
    ±1 V at 3σ). Then volts × input_scale, clipped to ±input_clip."""
    y_tr, y_te = np.load(OUT / "y_train.npy"), np.load(OUT / "y_test.npy")
    if emb != "pca":
        x_tr, x_te = np.load(OUT / f"{emb}_x_train.npy"), np.load(OUT / f"{emb}_x_test.npy")
    elif features == "pca":
        x_tr, x_te = np.load(OUT / "pca_x_train.npy"), np.load(OUT / "pca_x_test.npy")
    else:
        x_tr, x_te = np.load(OUT / "pca_raw_train.npy"), np.load(OUT / "pca_raw_test.npy")
        if features == "unwhitened":
            s = np.load(OUT / "pca_sigma.npy")
            x_tr, x_te = x_tr * (s / s[0]), x_te * (s / s[0])
        elif features != "raw":
            raise ValueError(f"features={features!r}: must be 'pca', 'raw' or 'unwhitened'")
    if train is not None and train < len(x_tr):
        from sklearn.model_selection import train_test_split
        x_tr, _, y_tr, _ = train_test_split(x_tr, y_tr, train_size=train, stratify=y_tr, random_state=seed)
    x_tr, x_te = (np.clip(a * input_scale, -input_clip, input_clip) for a in (x_tr, x_te))
    return x_tr, y_tr, x_te, y_te


# ------------------------------------------------------------------------------ analog
def hidden_diagnostics(model, x) -> dict:
    """Where the hidden layer sits on the diodes' curves, on samples x (free phase):
    `diode_on`: share of (node, sample) pairs where a diode's small-signal conductance is
    ≥ 10 % of the node's crossbar conductance Σ_j G_ij (the diode visibly bends the
    transfer); `diode_clamp`: ≥ 100 % (the node is held by the diode); `hidden_v_std` and
    `hidden_v_absmax99`: spread of the hidden node voltages; `out_y_std`: spread of y."""
    from analog.solution import device_branch_voltages
    c = model.circuit
    sol = model.solve(x)
    V = c.terminal_voltages(sol.v, sol.src)
    blk0 = c.dense[0]
    row_g = model.conductances[0].sum(1)                      # (n_hidden,)
    hid_terms = blk0.out_terms
    g_diode = np.zeros((len(x), len(hid_terms)))
    for nb in c.nonlinear:
        if not np.isin(nb.node_terms, hid_terms).all():
            continue
        u = device_branch_voltages(c, nb, V)
        _, g = nb.device.current(u)
        pos = np.searchsorted(hid_terms, nb.node_terms) if np.all(np.diff(hid_terms) > 0) else \
            np.array([int(np.where(hid_terms == t)[0][0]) for t in nb.node_terms])
        g_diode[:, pos] += g
    ratio = g_diode / row_g[None, :]
    hv = V[:, hid_terms]
    y = c.outputs(sol.v)
    return {"diode_on": float((ratio >= 0.1).mean()), "diode_clamp": float((ratio >= 1.0).mean()),
            "hidden_v_std": float(hv.std()), "hidden_v_absmax99": float(np.quantile(np.abs(hv), 0.99)),
            "out_y_std": float(y.std())}


def _device(p: dict):
    """The hidden layer's diodes: Shockley (is, n, rs) or the behavioural 'ideal' diode (off
    below a threshold, r_on above it, the knee rounded over `smoothing` volts)."""
    from analog.builders import make_device
    if p["diode_model"] == "ideal":
        return make_device("ideal", threshold=p["diode_threshold"], r_on=p["diode_r_on"],
                           smoothing=p["diode_smoothing"])
    return make_device(p["diode_model"], **{"is": p["diode_is"], "n": p["diode_n"], "rs": p["diode_rs"]})


def build(p: dict, n_features: int):
    import analog
    from analog.optimizers import Schedule, get_optimizer
    model = analog.build_dense_network(
        n_features, 10, hidden=(p["hidden"],), g_min=p["g_min"], g_max=p["g_max"], init=p["init"], gain=p["gain"],
        bias_levels=tuple(p["bias_levels"]), up_bias=p["up_bias"], down_bias=p["down_bias"],
        device=_device(p), seed=p["seed"])
    kw = {"temperature": p["temperature"]} if p["loss"] == "cross_entropy" else \
        {"midpoint": p["midpoint"], "amplitude": p["amplitude"]}
    opt = get_optimizer(p["optimizer"], lr=p["lr"],
                        schedule=Schedule(p["schedule"], total_epochs=p["epochs"]))
    model.compile(loss=p["loss"], optimizer=opt, beta=p["beta"], nudging=p["nudging"], **kw)
    if p["lr_out"] != 1.0:
        model.dense_layers[-1].lr_scale = float(p["lr_out"])
    return model


def surrogate_conductances(path) -> list[np.ndarray]:
    """The conductances (S) saved by `run(save=...)` as they are, or those of a surrogate
    saved by `surrogate(save=...)`: G = g_min +
    (g_max − g_min)·w with the main job's g_min, g_max (w may exceed 1 when upper > 1),
    transposed to the circuit's (rows, inputs) layout; the column orders are the same
    ([+x, −x, +1 V, −1 V] and [hidden, +1 V, −1 V]; outputs in ± pairs)."""
    z = np.load(path)
    if "arr_0" in z:                                  # saved by `run(save=...)`: the circuit's own
        return [z[f"arr_{k}"] for k in range(len(z.files))]
    g_min, g_max = DEFAULTS["g_min"], DEFAULTS["g_max"]
    return [(g_min + (g_max - g_min) * np.clip(z[k], 0.0, None)).T.copy() for k in ("w1", "w2")]


def conductance_stats(model) -> list[dict]:
    """Per layer: where the conductances sit, in units of the layer's g_max (mean, 99th
    percentile, max) and the effective weights |G⁺ − G⁻|/ΣG of each row (the signed weight
    a conductance-weighted mean gives a ± input pair; rows' largest and mean), and the
    rows' total conductance (mean, S)."""
    out = []
    for G, layer in zip(model.conductances, model.dense_layers):
        n_pairs = (G.shape[1] - 2) // 2
        row = G.sum(1, keepdims=True)
        w_eff = np.abs(G[:, :n_pairs] - G[:, n_pairs:2 * n_pairs]) / row if layer is model.dense_layers[0] else \
            None
        rel = G / layer.g_max
        d = {"mean_rel": float(rel.mean()), "p99_rel": float(np.quantile(rel, 0.99)), "max_rel": float(rel.max()),
             "row_sum_mean": float(row.mean())}
        if w_eff is not None:
            d.update(weff_row_max_mean=float(w_eff.max(1).mean()), weff_mean=float(w_eff.mean()))
        out.append(d)
    G1, G2 = model.conductances[0], model.conductances[-1]
    if len(model.conductances) == 2:
        # each hidden node's load by the output crossbar behind its amplifier (the amplifier's
        # input draws 1/A of the current its output delivers, through a conductance A·G / A = G)
        # against its own crossbar's total conductance
        load = G2[:, :G1.shape[0]].sum(0) / G1.sum(1)
        out[0].update(load_ratio_mean=float(load.mean()), load_ratio_max=float(load.max()))
    return out


def fit_exact(model, x, y, p: dict, callback) -> None:
    """`AnalogModel.fit`'s loop (same shuffling, schedule and optimiser) with the exact
    implicit gradient in place of EP: what EP would reach if its estimate were perfect."""
    for epoch in range(p["epochs"]):
        model.optimizer.epoch = epoch
        order = np.random.default_rng([p["seed"], epoch]).permutation(len(x))
        t0, correct, clipped = time.perf_counter(), 0, 0
        for lo in range(0, len(x), p["batch"]):
            idx = order[lo: lo + p["batch"]]
            res = model.gradients(x[idx], y[idx], method="exact")
            clipped += model.optimizer.apply(model.dense_layers, res.grads)
            correct += int((res.y.argmax(1) == y[idx]).sum())
        model.epoch = epoch + 1
        logs = {"accuracy": correct / len(x), "epoch_seconds": time.perf_counter() - t0, "clipped": clipped,
                "nonconverged": 0}
        model.history.append(epoch, logs, {})
        callback.on_epoch_end(epoch, logs, model)


def run(name: str = "run", train: int | None = 20000, emb: str = "pca", record: bool = True, verbose: int = 0,
        **settings) -> dict:
    """Train one EP block with DEFAULTS overridden by `settings`; test on the full test set."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(DEFAULTS))}")
    p = {**DEFAULTS, **settings}
    x_tr, y_tr, x_te, y_te = load(emb, train, p["features"], p["input_scale"], p["input_clip"], p["seed"])
    model = build(p, x_tr.shape[1])
    init_acc = None
    if p["init_frac"] is not None:
        # every layer uniform in the lowest init_frac of its range (the surrogate's start at
        # upper = 1/init_frac), in place of 'uniform' (1) or 'glorot' (0.12 / 0.22 here)
        rng = np.random.default_rng(p["seed"])
        model.set_conductances([l.g_min + p["init_frac"] * (l.g_max - l.g_min) * rng.uniform(0, 1, l.G.shape)
                                for l in model.dense_layers])
    if p["init_from"]:
        model.set_conductances(surrogate_conductances(p["init_from"]))
        init_acc = round(model.scores(x_te, y_te)["accuracy"], 4)
        print(f"  [{name}] circuit with the conductances of {p['init_from']}: test {init_acc:.4f}", flush=True)
    diag0 = hidden_diagnostics(model, x_te[:2000])
    t0 = time.perf_counter()
    per_epoch = []

    class Track:
        def on_train_begin(self, m): ...
        def on_train_end(self, m): ...

        def on_epoch_end(self, epoch, logs, m):
            per_epoch.append(round(m.scores(x_te, y_te)["accuracy"], 4))
            print(f"  [{name}] epoch {epoch + 1}: train {logs['accuracy']:.4f} test {per_epoch[-1]:.4f} "
                  f"({logs['epoch_seconds']:.0f} s, clipped {logs['clipped']})", flush=True)

    if p["epochs"] == 0:
        per_epoch.append(init_acc if init_acc is not None else round(model.scores(x_te, y_te)["accuracy"], 4))
        model.history.append(0, {"accuracy": model.scores(x_tr, y_tr)["accuracy"], "nonconverged": 0}, {})
    elif p["grad"] == "ep":
        model.fit(x_tr, y_tr, epochs=p["epochs"], batch_size=p["batch"], verbose=verbose, seed=p["seed"],
                  callbacks=[Track()])
    else:
        fit_exact(model, x_tr, y_tr, p, Track())
    seconds = time.perf_counter() - t0
    h = model.history.history
    diag = hidden_diagnostics(model, x_te[:2000])
    res = {"name": name, "kind": "ep", "emb": emb, "train_n": len(x_tr),
           "settings": {k: v for k, v in settings.items()},
           "test_acc": per_epoch[-1], "test_per_epoch": per_epoch, "train_acc": round(h["accuracy"][-1], 4),
           "seconds": round(seconds, 1), "nonconverged": int(h["nonconverged"][-1]),
           "init_diag": diag0, "diag": diag,
           "g_at_bounds": [float(((g <= l.g_min * 1.001) | (g >= l.g_max * 0.999)).mean())
                           for g, l in zip(model.conductances, model.dense_layers)],
           "g_stats": conductance_stats(model)}
    if init_acc is not None:
        res["init_acc"] = init_acc
    if p["save"]:
        np.savez(p["save"], *model.conductances)
    model.close()
    return _report(res, record)


def _report(res: dict, record: bool) -> dict:
    """Print one run's result as a JSON line and, when recorded, append it to results.jsonl."""
    print(json.dumps(res), flush=True)
    if record:
        with open(OUT / "results.jsonl", "a") as f:
            f.write(json.dumps(res) + "\n")
    return res


# ------------------------------------------------------------------------------ backprop
def baseline(name: str = "baseline", train: int | None = 20000, emb: str = "pca", record: bool = True,
             epochs: int = 10, batch: int = 128, lr: float = 1e-3, activation: str = "tanh", loss: str = "ce",
             hidden: int = 100, features: str = "pca", input_scale: float = 1.0, input_clip: float = 1.0,
             seed: int = 0) -> dict:
    """The in-run baseline of pipeline/stages/evaluate.py (Dense(hidden, tanh) → Dense(10),
    softmax cross-entropy, Adam) with its knobs exposed; loss 'mse': MSE on ±0.5 targets
    like the block's; hidden 0: a linear (softmax) classifier."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    x_tr, y_tr, x_te, y_te = load(emb, train, features, input_scale, input_clip, seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(x_tr.shape[1],))
    h = keras.layers.Dense(hidden, activation=activation)(inputs) if hidden else inputs
    net = keras.Model(inputs, keras.layers.Dense(10)(h))
    if loss == "ce":
        lossf, yt = keras.losses.SparseCategoricalCrossentropy(from_logits=True), y_tr
    else:
        lossf, yt = keras.losses.MeanSquaredError(), 0.5 * (2 * np.eye(10)[y_tr] - 1)
    net.compile(optimizer=keras.optimizers.Adam(lr), loss=lossf)
    t0 = time.perf_counter()
    per_epoch = []
    for _ in range(epochs):
        net.fit(x_tr, yt, epochs=1, batch_size=batch, verbose=0)
        per_epoch.append(round(float((net.predict(x_te, verbose=0).argmax(1) == y_te).mean()), 4))
    train_acc = float((net.predict(x_tr, verbose=0).argmax(1) == y_tr).mean())
    res = {"name": name, "kind": "backprop", "emb": emb, "train_n": len(x_tr),
           "settings": dict(epochs=epochs, batch=batch, lr=lr, activation=activation, loss=loss, hidden=hidden,
                            features=features, input_scale=input_scale, input_clip=input_clip),
           "test_acc": per_epoch[-1], "test_per_epoch": per_epoch, "train_acc": round(train_acc, 4),
           "seconds": round(time.perf_counter() - t0, 1)}
    return _report(res, record)


def surrogate(name: str = "surrogate", train: int | None = 20000, emb: str = "pca", record: bool = True,
              epochs: int = 10, lr: float = 0.01, batch: int = 64, upper: float = 1.0, knee: float = 0.07,
              gain: float = 4.0, temperature: float = 0.1, seed: int = 0, loading: int = 0,
              init_upper: float = 1.0, cosine: bool = False, save: str | None = None) -> dict:
    """A feed-forward model of the block trained by backprop (Keras): the same parametrisation
    (conductances G = g_min + (g_max − g_min)·w, w clipped to [0, upper], inputs ±x and ±1 V
    bias columns, each node the conductance-weighted mean of its inputs, gain·knee·tanh(v/knee)
    standing in for the diode pair, differential outputs, cross-entropy of y/T), with none of
    EP's specifics. upper > 1 lets conductances grow past g_max (a wider conductance range,
    the initialisation unchanged). If backprop on this model stops where EP does, the
    circuit's parametrisation, not EP, sets the limit.

    loading N > 0: the hidden nodes also carry the circuit's load from the output crossbar
    (an amplifier's input draws 1/A of its output current: v_j = (Σ_i G1_ji u_i + Σ_k G2_kj
    o_k/A)/(Σ_i G1_ji + Σ_k G2_kj)), solved by N fixed-point sweeps from o = 0 (the feed-forward
    surrogate ignores it). init_upper: w starts uniform in [0, init_upper]. cosine: Adam's
    learning rate decays to 0 over the epochs like the block's. save: .npz of w1, w2 (for
    `run --set init_from=...`: the circuit with these conductances)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import ops
    x_tr, y_tr, x_te, y_te = load(emb, train, "pca", 1.0, 1.0, seed)
    keras.utils.set_random_seed(seed)
    g0 = DEFAULTS["g_min"] / DEFAULTS["g_max"]
    n = x_tr.shape[1]

    def clip(w):
        return ops.clip(w, 0.0, upper)

    class Block(keras.Model):
        def __init__(self):
            super().__init__()
            init = keras.initializers.RandomUniform(0.0, init_upper)
            self.w1 = self.add_weight(shape=(2 * n + 2, DEFAULTS["hidden"]), initializer=init, constraint=clip)
            self.w2 = self.add_weight(shape=(DEFAULTS["hidden"] + 2, 20), initializer=init, constraint=clip)

        def call(self, x):
            one = ops.ones_like(x[:, :1])
            G1, G2 = g0 + (1 - g0) * self.w1, g0 + (1 - g0) * self.w2
            u = ops.concatenate([x, -x, one, -one], axis=1)
            v = ops.matmul(u, G1) / ops.sum(G1, axis=0)
            h = gain * knee * ops.tanh(v / knee)
            o = ops.matmul(ops.concatenate([h, one, -one], axis=1), G2) / ops.sum(G2, axis=0)
            if loading:
                G2h = G2[:-2]                                   # (hidden, 20): hidden → output conductances
                den = ops.sum(G1, axis=0) + ops.sum(G2h, axis=1)
                for _ in range(loading):
                    v = (ops.matmul(u, G1) + ops.matmul(o, ops.transpose(G2h)) / gain) / den
                    h = gain * knee * ops.tanh(v / knee)
                    o = ops.matmul(ops.concatenate([h, one, -one], axis=1), G2) / ops.sum(G2, axis=0)
            return (o[:, 0::2] - o[:, 1::2]) / temperature

        def hidden(self, x):
            """The hidden nodes' voltages v before the knee (feed-forward, without loading)."""
            x = ops.convert_to_tensor(x, dtype="float32")
            one = ops.ones_like(x[:, :1])
            G1 = g0 + (1 - g0) * self.w1
            return ops.matmul(ops.concatenate([x, -x, one, -one], axis=1), G1) / ops.sum(G1, axis=0)

    net = Block()
    steps = epochs * -(-len(x_tr) // batch)
    sched = keras.optimizers.schedules.CosineDecay(lr, steps) if cosine else lr
    net.compile(optimizer=keras.optimizers.Adam(sched),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    t0, per_epoch = time.perf_counter(), []
    for _ in range(epochs):
        net.fit(x_tr, y_tr, epochs=1, batch_size=batch, verbose=0)
        per_epoch.append(round(float((net.predict(x_te, verbose=0).argmax(1) == y_te).mean()), 4))
    train_acc = float((net.predict(x_tr, verbose=0).argmax(1) == y_tr).mean())
    w1, w2 = (np.clip(np.asarray(w), 0.0, upper) for w in (net.w1, net.w2))
    if save:
        np.savez(save, w1=w1, w2=w2)
    v = np.asarray(net.hidden(x_te[:2000]))
    settings = dict(epochs=epochs, lr=lr, batch=batch, upper=upper, knee=knee, gain=gain, temperature=temperature)
    # the later knobs only when set, so the earlier rows' settings read the same
    settings.update({k: v for k, v, default in (("loading", loading, 0), ("init_upper", init_upper, 1.0),
                                                ("cosine", cosine, False)) if v != default})
    res = {"name": name, "kind": "surrogate", "emb": emb, "train_n": len(x_tr),
           "settings": settings,
           "w_stats": [dict(mean=float(w.mean()), p99=float(np.quantile(w, 0.99)),
                            at_upper=float((w >= upper * 0.999).mean()), at_zero=float((w <= 1e-6).mean()))
                       for w in (w1, w2)],
           "hidden": dict(v_std=float(v.std()), v_absmax99=float(np.quantile(np.abs(v), 0.99)),
                          past_knee=float((np.abs(v) > knee).mean())),
           "test_acc": per_epoch[-1], "test_per_epoch": per_epoch, "train_acc": round(train_acc, 4),
           "seconds": round(time.perf_counter() - t0, 1)}
    return _report(res, record)


def table(path: Path = OUT / "results.jsonl") -> str:
    rows = [json.loads(line) for line in open(path)]
    lines = ["| name | kind | emb | train n | settings | test acc | best epoch acc | train acc | s | diode on / clamp |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r.get("diag", {})
        dio = f"{d.get('diode_on', float('nan')):.2f} / {d.get('diode_clamp', float('nan')):.2f}" if d else ""
        s = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        lines.append(f"| {r['name']} | {r['kind']} | {r['emb']} | {r['train_n']} | {s} | {r['test_acc']:.4f} | "
                     f"{max(r['test_per_epoch']):.4f} | {r['train_acc']:.4f} | {r['seconds']:.0f} | {dio} |")
    return "\n".join(lines)


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["embed", "run", "baseline", "surrogate", "table"])
    ap.add_argument("--name", default="run")
    ap.add_argument("--train", type=int, default=20000, help="training slice (0: all 54,000)")
    ap.add_argument("--emb", default="pca")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    kw = {}
    for item in a.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        kw[key] = _value(value)
    train = a.train or None
    if a.what == "embed":
        embed()
    elif a.what == "run":
        run(a.name, train, a.emb, **kw)
    elif a.what == "baseline":
        baseline(a.name, train, a.emb, **kw)
    elif a.what == "surrogate":
        surrogate(a.name, train, a.emb, **kw)
    else:
        print(table())


if __name__ == "__main__":
    main()
