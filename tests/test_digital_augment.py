"""Data augmentation of the Keras encoders (digital.params.augment_shift / augment_flip):
the augmented images against translations and mirror images computed independently, the
default leaves training exactly as it was, and bad values are refused by name."""
import numpy as np
import pytest

import digital
from digital import CNNEncoder, MLPEncoder
from digital.keras_base import augment_images


def _shifted(img, dy, dx):
    """img moved down by dy and right by dx pixels, zeros moved in (loops, no padding trick)."""
    h, w = img.shape
    out = np.zeros_like(img)
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[r, c] = img[r - dy, c - dx]
    return out


def _candidates(img, shift, flip):
    cands = {}
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            s = _shifted(img, dy, dx)
            cands[(dy, dx, False)] = s
            if flip:
                cands[(dy, dx, True)] = s[:, ::-1]
    return cands


def _which(out, img, shift, flip):
    return [k for k, c in _candidates(img, shift, flip).items() if np.array_equal(out, c)]


@pytest.fixture(scope="module")
def images():
    # distinct random images with no zero pixel, so that each translation/mirror is distinguishable
    return np.random.default_rng(3).uniform(0.1, 1.0, size=(60, 28, 28, 1)).astype(np.float32)


@pytest.mark.parametrize("shift,flip", [(1, False), (2, False), (0, True), (2, True)])
def test_augmented_images_are_shifted_and_mirrored_copies(images, shift, flip):
    before = images.copy()
    out = augment_images(images, np.random.default_rng(0), shift, flip)
    np.testing.assert_array_equal(images, before)         # the input is left alone
    assert out.shape == images.shape and out.dtype == images.dtype
    seen = []
    for img, o in zip(images[..., 0], out[..., 0]):
        match = _which(o, img, shift, flip)
        assert match, "an augmented image is no translation / mirror image of its original"
        seen += match
    # the draws cover the range: several offsets, and both mirrored and plain images
    assert len({k[:2] for k in seen}) >= min(5, (2 * shift + 1) ** 2)
    if flip:
        assert {k[2] for k in seen} == {False, True}
    if shift:
        assert max(max(abs(k[0]), abs(k[1])) for k in seen) == shift


def test_no_augmentation_returns_an_unchanged_copy(images):
    out = augment_images(images, np.random.default_rng(0), 0, False)
    np.testing.assert_array_equal(out, images)
    assert out is not images


def test_a_known_shift():
    img = np.zeros((1, 28, 28), np.float32)
    img[0, 5, 7] = 1.0

    class Fixed:   # a generator that draws dy = +2, dx = -1
        def __init__(self):
            self.calls = iter([np.array([2]), np.array([-1])])

        def integers(self, *a, **k):
            return next(self.calls)

    out = augment_images(img, Fixed(), 2, False)
    assert out[0, 7, 6] == 1.0 and out.sum() == 1.0


def _tiny_data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=200)
    return x, y


def _weights(enc):
    return [np.asarray(w) for w in enc.model_.weights]


def test_default_leaves_training_identical(monkeypatch):
    x, y = _tiny_data()
    kw = dict(filters=(4,), embedding_dim=8, epochs=2, batch_size=50, seed=1)
    assert CNNEncoder(**kw).augment_shift == 0 and CNNEncoder(**kw).augment_flip is False
    calls = []
    import keras
    orig = keras.Model.fit

    def spy(self, *a, **k):   # the default trains on the arrays themselves, in one fit call
        calls.append((a[0], k))
        return orig(self, *a, **k)

    monkeypatch.setattr(keras.Model, "fit", spy)
    a = CNNEncoder(**kw).fit(x, y, verbose=0)
    assert len(calls) == 1 and calls[0][1]["epochs"] == 2 and calls[0][1]["shuffle"] is True
    np.testing.assert_array_equal(calls[0][0], x[..., None].astype(np.float32) / 255)
    b = CNNEncoder(**kw, augment_shift=0, augment_flip=False).fit(x, y, verbose=0)
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_array_equal(wa, wb)


def test_augmented_training_sees_augmented_images_and_is_repeatable(monkeypatch):
    x, y = _tiny_data()
    kw = dict(filters=(4,), embedding_dim=8, epochs=2, batch_size=50, seed=1, augment_shift=1, augment_flip=True)
    calls = []
    import keras
    orig = keras.Model.fit

    def spy(self, *a, **k):
        calls.append((np.array(a[0]), np.array(a[1])))
        return orig(self, *a, **k)

    monkeypatch.setattr(keras.Model, "fit", spy)
    a = CNNEncoder(**kw).fit(x, y, verbose=0, validation_data=(x[:20], y[:20]))
    assert len(calls) == 2                                   # one call per epoch, each a fresh draw
    assert not np.array_equal(calls[0][0], calls[1][0])
    assert set(a.history_) >= {"accuracy", "loss", "val_accuracy"} and len(a.history_["loss"]) == 2
    xs = x.astype(np.float32) / 255
    for xa, ya in calls:   # every image seen once per epoch, as a translation/mirror of itself
        assert sorted(ya.tolist()) == sorted(y.tolist())
        for o in xa[:25, ..., 0]:
            assert any(_which(o, img, 1, True) for img in xs), "an augmented image matches no training image"
    b = CNNEncoder(**kw).fit(x, y, verbose=0, validation_data=(x[:20], y[:20]))
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_array_equal(wa, wb)


def test_retraining_to_targets_is_not_augmented(monkeypatch):
    x, y = _tiny_data()
    enc = MLPEncoder(hidden=(8,), embedding_dim=4, epochs=1, seed=0, augment_shift=2, augment_flip=True)
    enc.fit(x, y, verbose=0)
    seen = []
    import keras
    orig = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, **k: seen.append(np.array(a[0])) or orig(self, *a, **k))
    enc.fit_targets(x, enc.embed(x), y, epochs=1, verbose=0)
    np.testing.assert_array_equal(seen[0], x[..., None].astype(np.float32) / 255)


@pytest.mark.parametrize("kwargs,match", [
    ({"augment_shift": -1}, "augment_shift must be an integer from 0 to 4"),
    ({"augment_shift": 5}, "augment_shift must be an integer from 0 to 4"),
    ({"augment_shift": 1.5}, "augment_shift"),
    ({"augment_flip": 1}, "augment_flip must be true or false"),
    ({"augment_flip": "yes"}, "augment_flip must be true or false"),
])
def test_bad_values_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CNNEncoder(**kwargs)


def test_config_reaches_the_encoder():
    from pipeline.system.build import encoder_params
    from pipeline.config import load_config
    cfg = load_config("experiments/fashion_mnist_small.yaml",
                      ["digital.params={filters: [4], augment_shift: 2, augment_flip: true}"])
    enc = digital.make_encoder("cnn", **encoder_params(cfg))
    assert enc.augment_shift == 2 and enc.augment_flip is True
