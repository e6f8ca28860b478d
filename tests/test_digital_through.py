"""Training the encoder through the analog block (issue 13 part 1): the encoder's weight
gradient built from the block's EP input gradient, against independent computations."""
from __future__ import annotations

import numpy as np
import pytest

from analog.builders import build_dense_network
from analog.optimizers import Adam
from digital import MLPEncoder

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    # sigmoid + an asymmetric box: volts = (v_high − v_low)·a + v_low, so the voltage map is not trivial
    enc = MLPEncoder(embedding_dim=4, v_low=-0.6, v_high=0.9, hidden=(6,), dropout=0.0, activation="sigmoid", seed=2)
    block = build_dense_network(4, 3, hidden=(5,), up_bias=-0.3, down_bias=0.3, seed=1)
    block.compile("mse", Adam(0.02), beta=1e-7)
    # trained a little on 3 clusters in the box, so its outputs depend on its inputs
    centers = rng.uniform(-0.5, 0.8, (3, 4))
    yb = rng.integers(0, 3, 240)
    block.fit(np.clip(centers[yb] + rng.normal(0, 0.2, (240, 4)), -0.6, 0.9), yb, epochs=2, batch_size=16, verbose=0)
    return enc, block, images, labels


def _flat(grads):
    return np.concatenate([np.ravel(g) for g in grads])


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _jacobian_chain(enc, images, g):
    """(1/B) Σ_b (∂volts_b/∂θ)ᵀ g_b from the full Jacobian (tape.jacobian), per weight."""
    model = enc.model
    x = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        volts, _ = model(x, training=False)
    out = []
    for w in model.trainable_weights:
        J = tape.jacobian(volts, w)                       # (B, D, *w.shape)
        J = np.zeros((len(images), 4) + tuple(w.shape)) if J is None else np.asarray(J, dtype=np.float64)
        out.append(np.tensordot(g, J, axes=([0, 1], [0, 1])) / len(images))
    return out


def _mean_cost(enc, block, images, labels):
    e = enc.embed(images)
    return float(np.mean(block.gradients(e, labels, method="exact").loss))


def test_ep_weight_gradient_matches_exact_chain_and_finite_differences(setup):
    enc, block, images, labels = setup
    e = enc.embed(images)
    g_ep = block.gradients(e, labels, method="ep", input_grad=True).input_grad
    g_exact = block.gradients(e, labels, method="exact").input_grad
    ours = _flat(enc.embedding_weight_gradients(images, g_ep))
    independent = _flat(_jacobian_chain(enc, images, g_exact))
    assert np.linalg.norm(independent) > 0
    assert _cos(ours, independent) >= 0.999
    assert np.linalg.norm(ours - independent) <= 0.02 * np.linalg.norm(independent)
    # finite differences of the circuit's mean cost along a random direction in weight space
    rng = np.random.default_rng(0)
    weights = enc.model.trainable_weights
    saved = [w.numpy().copy() for w in weights]
    dirs = [rng.normal(size=w.shape) for w in saved]
    norm = np.linalg.norm(_flat(dirs))
    dirs = [(d / norm).astype(np.float32) for d in dirs]   # a unit step in weight space
    eps = 1e-2
    vals = []
    for sign in (1, -1):
        for w, w0, d in zip(weights, saved, dirs):
            w.assign(w0 + sign * eps * d)
        vals.append(_mean_cost(enc, block, images, labels))
    for w, w0 in zip(weights, saved):
        w.assign(w0)
    fd = (vals[0] - vals[1]) / (2 * eps)
    predicted = float(ours @ _flat(dirs))
    assert abs(fd - predicted) <= 0.03 * abs(fd) + 1e-12, (fd, predicted)


def test_fit_through_lowers_the_circuit_cost_and_skips_nonfinite_rows(setup):
    enc0, block, images, labels = setup
    enc = MLPEncoder(**enc0.get_params())
    before = _mean_cost(enc, block, images, labels)
    seen = []

    def grad_fn(e, idx):
        seen.append(np.array(idx))
        g = block.gradients(e, labels[idx], method="ep", input_grad=True).input_grad
        g[0] = np.nan          # a sample that did not converge: skipped
        return g

    enc.fit_through(images, labels, grad_fn, epochs=15, batch_size=4, learning_rate=0.02, verbose=0)
    after = _mean_cost(enc, block, images, labels)
    assert after < 0.8 * before, (before, after)
    assert enc.history_["through_skipped"] == [2] * 15
    assert sorted(np.concatenate(seen[:2]).tolist()) == list(range(8))   # one epoch visits every image once
    emb = enc.embed(images)
    assert emb.min() >= -0.6 and emb.max() <= 0.9


def test_fit_through_checks_grad_fn_shape(setup):
    enc, _, images, labels = setup
    with pytest.raises(ValueError, match="grad_fn returned shape"):
        enc.fit_through(images, labels, lambda e, idx: np.zeros((len(idx), 3)), epochs=1, verbose=0)
