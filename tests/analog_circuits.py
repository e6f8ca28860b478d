"""Small circuits, chips and numerical checks shared by the analog tests."""
import numpy as np

import analog.layers as L
from analog.builders import build_dense_network
from analog.devices import IdealDiode, MOSDiode, ShockleyDiode
from analog.hardware import resolve_hardware
from analog.model import AnalogModel


def block(features=3, hidden=(5,), outputs=2, gain=3.0, vref=0.0, device=None, up=-0.3, down=0.3,
          g=(1e-6, 1e-4), seed=0):
    """Inputs ± → [crossbar → diodes → amplifier] × len(hidden) → crossbar → differential outputs.
    Diode biases ±0.3 V with a Shockley diode (≈0.6 V knee) clamp the hidden nodes near ±0.3 V,
    so with inputs of ±2 V many diodes conduct."""
    device = device or ShockleyDiode(RS=10.0)
    x = L.InputVoltage(features)
    nodes = x
    for k, units in enumerate(hidden):
        h = L.Dense(units, g_min=g[0], g_max=g[1], seed=seed + k)(L.Concatenate()([nodes, L.BiasVoltage([1.0, -1.0])]))
        h = L.DiodeLayer("down", down, device)(L.DiodeLayer("up", up, device)(h))
        nodes = L.Amplification(gain)(h)
    out = L.Dense(2 * outputs, g_min=g[0], g_max=g[1], seed=seed + 99)(L.Concatenate()([nodes, L.BiasVoltage([1.0, -1.0])]))
    return AnalogModel(x, L.CurrentLayer()(out), vref=vref)


DEVICES = {
    "shockley": ShockleyDiode(),
    "shockley_rs": ShockleyDiode(RS=50.0),
    "ideal": IdealDiode(threshold=0.2, r_on=2e3, smoothing=0.02),
    "mos": MOSDiode(VTO=0.3, KP=2e-4, LAMBDA=0.02),
}


def inputs(n, features, scale=2.0, seed=0):
    return np.random.default_rng(seed).uniform(-scale, scale, (n, features))


def terminal_voltages(c, gain, offset, v, src):
    """Terminal voltages from the definitions (not the circuit's own method)."""
    amp = c.vref + gain * (v[:, c.amp_in] - c.vref) + offset
    return np.concatenate([v, src, amp], axis=1)


def kcl_residual(c, G_list, gain, offset, v, src, nudge=None):
    """Net current (A) leaving every free node, summed branch by branch from the element list:
    crossbar resistors, each device instance, gmin shunts, amplifier backward currents (the
    input node draws 1/A_k of what the output delivers) and nudging sources. Also returns the
    sum of |branch currents| at each node (the scale of the residual)."""
    V = terminal_voltages(c, gain, offset, v, src)
    B, n_t = V.shape
    net, mag = np.zeros((B, n_t)), np.zeros((B, n_t))

    def branch(a, b, i):            # current i flows from terminal a to terminal b
        net[:, a] += i
        net[:, b] -= i
        mag[:, a] += np.abs(i)
        mag[:, b] += np.abs(i)

    for blk, G in zip(c.dense, G_list):
        for r, to in enumerate(blk.out_terms):
            for q, ti in enumerate(blk.in_terms):
                branch(to, ti, G[r, q] * (V[:, to] - V[:, ti]))
    for blk in c.nonlinear:
        for k, t in enumerate(blk.node_terms):
            dev = blk.device.instance(k)
            anode, cathode = (t, blk.ref_term) if blk.sign > 0 else (blk.ref_term, t)
            branch(anode, cathode, dev.current(V[:, anode] - V[:, cathode])[0])
    n_f, n_s = c.n_free, c.n_sources
    for t in range(n_f):
        branch(t, n_f, c.gmin * V[:, t])   # to ground: the value at terminal n_f is not checked
    for k, fin in enumerate(c.amp_in):
        out = n_f + n_s + k
        delivered = net[:, out].copy()    # what the output delivers into the circuit
        net[:, fin] += delivered / gain[k]
        mag[:, fin] += np.abs(delivered / gain[k])
    if nudge is not None:
        net[:, c.out_plus] -= nudge
        net[:, c.out_minus] += nudge
    return net[:, :n_f], mag[:, :n_f]


def largest_currents(c, G_list, V):
    """(largest |device current|, largest |crossbar branch current|) over a batch, amperes,
    from terminal voltages V: tells whether the diodes really conduct at an operating point."""
    i_dev = max(np.abs(blk.device.current(blk.sign * (V[:, blk.node_terms] - V[:, [blk.ref_term]]))[0]).max()
                for blk in c.nonlinear)
    i_bar = max(np.abs(G[None] * (V[:, blk.out_terms][:, :, None] - V[:, blk.in_terms][:, None, :])).max()
                for blk, G in zip(c.dense, G_list))
    return i_dev, i_bar


def trained_three_class_block(n=240, hidden=12, epochs=2):
    """A small block (6 inputs → `hidden` → 3 outputs) trained a little on three noisy
    clusters, so some samples are still wrong: (model, x, y)."""
    from analog.builders import build_dense_network
    from analog.optimizers import Adam
    rng = np.random.default_rng(0)
    centers = rng.uniform(-0.6, 0.6, (3, 6))
    y = rng.integers(0, 3, n)
    x = np.clip(centers[y] + rng.normal(0, 0.35, (n, 6)), -1, 1)
    model = build_dense_network(6, 3, hidden=(hidden,), up_bias=-0.3, down_bias=0.3, seed=1)
    model.compile("mse", Adam(0.02), beta=1e-7)
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return model, x, y


def four_input_block(n, data_seed, seed=3, **build):
    """An untrained dense block, 4 inputs → 6 hidden → 3 classes, compiled for EP (MSE, β = 1e-7),
    with n inputs uniform in [−1, 1] and random labels: (model, x, y)."""
    rng = np.random.default_rng(data_seed)
    model = build_dense_network(4, 3, hidden=(6,), seed=seed, **build)
    model.compile("mse", "adam", beta=1e-7)
    x = rng.uniform(-1, 1, (n, 4))
    y = rng.integers(0, 3, n)
    return model, x, y


def steady_chip_spec():
    """Programming error and circuit variation, no read noise, no drift compensation: every read
    of a chip returns the same conductances, so the chip is one fixed circuit."""
    return resolve_hardware("ideal", {"device": {"prog_noise": "constant", "prog_sigma": 4e-6},
                                      "variation": {"is_sigma": 0.5, "gain_sigma": 0.1, "offset_sigma": 0.02},
                                      "drift_compensation": False})


#: every kind of variation a chip can have, and stuck and quantised devices
EVERY_VARIATION = {"variation": {"is_sigma": 0.5, "vto_sigma": 0.05, "gain_sigma": 0.05, "offset_sigma": 0.01},
                   "device": {"stuck_g_min": 0.05, "stuck_g_max": 0.05, "levels": 16}}


def solve_on_both_engines(chip, x, t=3600.0):
    """The chip read once at time t, and that read solved by the native engine and by ngspice;
    both must converge to within 1 µV of each other. Closes the chip's engines: (G, native, ngspice)."""
    G = chip.conductances_at(t)
    try:
        native = chip.solve(x, engine="native", G_list=G)
        spice = chip.solve(x, engine="ngspice", G_list=G, processes=1)
    finally:
        chip.close()
    assert native.converged.all() and spice.converged.all()
    assert np.abs(native.v - spice.v).max() <= 1e-6
    return G, native, spice


def mse_to_half_volt(out, y, classes=3):
    """The MSE cost of the compiled blocks written out: ½ Σ_k (y_k − (±0.5 V))², per sample."""
    return 0.5 * ((out - 0.5 * (2 * np.eye(classes)[y] - 1)) ** 2).sum(1)


def central_differences(cost, x, h=1e-5):
    """∂cost_i/∂x_ij by central differences, one input feature at a time, for a cost that
    gives one value per sample (row of x)."""
    fd = np.zeros_like(x)
    for j in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, j] = h
        fd[:, j] = (cost(x + e) - cost(x - e)) / (2 * h)
    return fd
