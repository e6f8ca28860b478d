"""MAC counts of the encoders against counts done by hand from the architecture."""
import pytest

from digital import CNNEncoder, MLPEncoder, PCAEncoder


def _conv(h, w, c_out, c_in, k=3):
    return h * w * c_out * k * k * c_in


@pytest.mark.parametrize("filters", [(32, 64, 128), (8, 16, 32), (4, 8)])
def test_cnn_macs_by_hand(filters):
    # 3x3 'same' convs at 28, 14, 7 px (2x2 pooling between stages), then Dense(flat → 150)
    sizes, c_in, want = [28, 14, 7, 3], 1, 0
    for size, f in zip(sizes, filters):
        want += _conv(size, size, f, c_in)
        c_in = f
    side = sizes[len(filters) - 1]
    want += side * side * filters[-1] * 150
    assert CNNEncoder(filters=filters, embedding_dim=150).macs_per_image() == want


def test_main_job_cnn_is_8_4_million_macs():
    # conv trunk 225,792 + 3,612,672 + 3,612,672 = 7,451,136 (the "about 7.4 M" of issue 13)
    # plus the embedding layer 6,272 x 150 = 940,800
    assert CNNEncoder().macs_per_image() == 7_451_136 + 940_800


def test_two_convs_per_stage():
    enc = CNNEncoder(filters=(4, 8), convs_per_stage=2, embedding_dim=10)
    want = _conv(28, 28, 4, 1) + _conv(28, 28, 4, 4) + _conv(14, 14, 8, 4) + _conv(14, 14, 8, 8) + 14 * 14 * 8 * 10
    assert enc.macs_per_image() == want


def test_mlp_and_pca_macs():
    assert MLPEncoder(hidden=(128,), embedding_dim=24).macs_per_image() == 784 * 128 + 128 * 24
    assert MLPEncoder(hidden=(), embedding_dim=24).macs_per_image() == 784 * 24
    assert PCAEncoder(embedding_dim=150).macs_per_image() == 784 * 150


def test_separable_stages_by_hand():
    # stage 1 a full conv3x3 (1 → 16 @28); stages 2-4 depthwise 3x3 (C_in @H) + pointwise 1x1 (C_in → f @H)
    want = _conv(28, 28, 16, 1)
    for size, c_in, f in ((14, 16, 32), (7, 32, 64), (3, 64, 128)):
        want += size * size * c_in * 9 + size * size * c_in * f
    want += 3 * 3 * 128 * 150
    enc = CNNEncoder(filters=(16, 32, 64, 128), separable=True, embedding_dim=150)
    assert enc.macs_per_image() == want == 607_648
    assert CNNEncoder(filters=(8, 16, 32), separable=False).macs_per_image() == 743_232   # the default: full convs


def test_separable_must_be_a_bool():
    with pytest.raises(ValueError, match="separable must be true or false"):
        CNNEncoder(separable=1)
