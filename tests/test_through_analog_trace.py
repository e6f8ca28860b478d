"""The block's cost and accuracy that through-analog retraining records per epoch
(pipeline.system.through_analog.grad_fn_for / trace_per_epoch), against the block's own forward pass."""
from __future__ import annotations

import numpy as np
import pytest

from analog.builders import build_dense_network
from analog.optimizers import Adam
from pipeline.system.through_analog import grad_fn_for, trace_per_epoch


@pytest.fixture(scope="module")
def block():
    rng = np.random.default_rng(0)
    b = build_dense_network(4, 3, hidden=(5,), up_bias=-0.3, down_bias=0.3, seed=1)
    b.compile("mse", Adam(0.02), beta=1e-7)
    y = rng.integers(0, 3, 120)
    centers = rng.uniform(-0.5, 0.5, (3, 4))
    b.fit(np.clip(centers[y] + rng.normal(0, 0.2, (120, 4)), -1, 1), y, epochs=2, batch_size=16, verbose=0)
    return b


def test_trace_is_the_blocks_cost_and_accuracy_per_epoch(block):
    rng = np.random.default_rng(1)
    emb = [rng.uniform(-1, 1, (10, 4)) for _ in range(2)]      # the embeddings of two epochs
    labels = rng.integers(0, 3, 10)
    fn = grad_fn_for(block, labels)
    for e in emb:                                                # 10 samples, batches of 4: 3 calls per epoch
        for lo in range(0, 10, 4):
            idx = np.arange(lo, min(lo + 4, 10))
            fn(e[idx], idx)
    fn(emb[0][:4], np.arange(4))                                 # a third epoch cut short: left out
    curve = trace_per_epoch(fn.trace, n=10, batch_size=4)
    assert len(curve["cost"]) == 2
    target = np.full((10, 3), -0.5)                              # the MSE targets: ±0.5 V, one-hot
    target[np.arange(10), labels] = 0.5
    for k, e in enumerate(emb):
        y = block.predict(e)
        cost = 0.5 * np.sum((y - target) ** 2, axis=1)
        assert curve["cost"][k] == pytest.approx(cost.mean(), rel=1e-9)
        assert curve["train_accuracy"][k] == pytest.approx(np.mean(y.argmax(1) == labels))


def test_cross_entropy_through_cost_is_its_own_gradient_and_cost(block):
    """digital.through_loss=cross_entropy: the EP input gradient of the softmax cross-entropy
    (not the block's MSE) against the exact implicit gradient of that cost, and the recorded
    cost against −log softmax(y/T) of the block's forward pass."""
    from analog.losses import CrossEntropy
    from pipeline.config import validate_config
    from pipeline.system.through_analog import through_cost
    assert through_cost(validate_config({"name": "t", "digital": {"through_loss": "block"}})) is None
    ce = through_cost(validate_config({"name": "t", "digital": {"through_loss": "cross_entropy",
                                                                "through_temperature": 0.05}}))
    assert isinstance(ce, CrossEntropy) and ce.temperature == 0.05
    rng = np.random.default_rng(2)
    e, labels = rng.uniform(-1, 1, (12, 4)), rng.integers(0, 3, 12)
    fn = grad_fn_for(block, labels, loss=ce)
    g = fn(e, np.arange(12))
    exact = block.gradients(e, labels, method="exact", loss=ce).input_grad
    mse = block.gradients(e, labels, method="exact").input_grad
    cos = float(np.sum(g * exact) / (np.linalg.norm(g) * np.linalg.norm(exact)))
    assert cos >= 0.999
    assert float(np.sum(g * mse) / (np.linalg.norm(g) * np.linalg.norm(mse))) < 0.99   # another cost indeed
    z = block.predict(e) / 0.05
    z -= z.max(1, keepdims=True)
    nll = -(z[np.arange(12), labels] - np.log(np.exp(z).sum(1)))
    assert fn.trace[0][0] / fn.trace[0][2] == pytest.approx(nll.mean(), rel=1e-9)
    assert fn.trace[0][2:] == (12, 12)                          # all converged, 12 samples
