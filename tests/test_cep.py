"""Continual EP: the accumulated local updates of the nudged phase against EP and the exact
gradient (small and growing steps), training with it, and its bad input."""
import numpy as np
import pytest

from analog.cep import cep_gradients, cosine, feedback_response, feedback_series, sgd_update
from analog.ep import ep_gradients, exact_gradients
from tests.analog_circuits import block, inputs

G_RANGE = (1e-7, 2e-5)


def _setup():
    m = block(features=4, hidden=(10,), outputs=3, g=G_RANGE)
    m.compile(loss="mse", optimizer="sgd", beta=1e-7)
    x, y = inputs(16, 4, scale=1.0), np.arange(16) % 3
    return m, x, y


def _sgd(G, eta):
    span = G_RANGE[1] - G_RANGE[0]

    def update(g_t):
        for k in range(len(G)):
            G[k] = np.clip(G[k] - eta * span ** 2 * g_t[k], *G_RANGE)
        return G
    return update


@pytest.mark.parametrize("nudging", ["symmetric", "positive"])
def test_without_updates_the_steps_telescope_to_ep(nudging):
    m, x, y = _setup()
    eng, G = m.get_engine("native"), m.conductances
    ep = ep_gradients(eng, m.circuit, G, x, y, m.loss, 1e-7, nudging)
    cep = cep_gradients(eng, m.circuit, G, x, y, m.loss, 1e-7, nudging, steps=7)
    for a, b in zip(cep.grads, ep.grads):
        assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max()


def test_small_steps_follow_the_exact_gradient_and_large_ones_drift():
    m, x, y = _setup()
    eng, G0 = m.get_engine("native"), [g.copy() for g in m.conductances]
    exact = exact_gradients(eng, m.circuit, G0, x, y, m.loss).grads
    cos = {}
    for eta in (1e-4, 1e-2):
        G = [g.copy() for g in G0]
        res = cep_gradients(eng, m.circuit, G0, x, y, m.loss, 1e-7, "symmetric", steps=10, update=_sgd(G, eta))
        assert res.used.all()
        cos[eta] = cosine(res.grads, exact)
        moved = max(np.abs(a - b).max() for a, b in zip(G, G0))
        assert moved > 0                                   # the conductances did change during the phase
    assert cos[1e-4] >= 0.99
    assert cos[1e-2] < cos[1e-4] - 0.1


def test_training_with_cep_lowers_the_loss():
    m = block(features=4, hidden=(10,), outputs=3, g=G_RANGE)
    m.compile(loss="mse", optimizer="sgd", beta=1e-7, algorithm="c-ep", cep_steps=5)
    x, y = inputs(60, 4, scale=1.0, seed=3), np.random.default_rng(3).integers(0, 3, 60)
    x[np.arange(60), y] += 1.0                              # a learnable rule: the class's feature is high
    before = m.evaluate(x, y)["loss"]
    m.fit(x, y, epochs=4, batch_size=10, verbose=0)
    after = m.evaluate(x, y)["loss"]
    assert after < 0.9 * before


def test_bad_cep_settings_are_named():
    m = block(features=2, hidden=(3,), outputs=1)
    with pytest.raises(ValueError, match="training.algorithm"):
        m.compile(algorithm="cep")
    with pytest.raises(ValueError, match="training.optimizer.name must be 'sgd'"):
        m.compile(optimizer="adam", algorithm="c-ep")
    with pytest.raises(ValueError, match="training.cep_steps"):
        m.compile(optimizer="sgd", algorithm="c-ep", cep_steps=0)


def test_the_drift_is_the_echo_of_each_step_in_the_next():
    """C-EP's deviation from EP against an independent prediction from free solves only
    (analog.cep.feedback_series): each step reads the circuit's response to the update made
    after the step before, divided by β; the series sums those echoes. First order alone
    falls short once η ρ is not small."""
    m, x, y = _setup()
    eng, G0 = m.get_engine("native"), [g.copy() for g in m.conductances]
    beta, bounds = 1e-6, [G_RANGE] * len(G0)
    ep = ep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric").grads

    def dev(a_list):
        return np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(a_list, ep)) / sum(np.sum(b ** 2) for b in ep))
    got = {}
    for eta, K in ((1e-4, 10), (2e-2, 10), (2e-2, 3)):
        G = [g.copy() for g in G0]
        got[eta, K] = cep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric", steps=K,
                                    update=sgd_update(G, eta, bounds, clip=False)).grads
        series, rho = feedback_series(eng, m.circuit, G0, x, ep, beta, bounds, eta, K)
        d = dev(got[eta, K])
        assert d > 1e-4                                          # the updates did move the estimate
        assert abs(d - dev(series)) <= 0.03 * d
        assert max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(got[eta, K], series)) <= 0.03 * d
    assert 0.3 < 2e-2 * rho < 1.0                                # η ρ: below 1 the series converges
    M_ep = feedback_response(eng, m.circuit, G0, x, ep, beta, bounds)
    first = [b + 2e-2 * 9 / 10 * mv for b, mv in zip(ep, M_ep)]
    assert dev(first) < 0.7 * dev(got[2e-2, 10])
