"""LocallyConnected2D (issue 17): the layer's output against a patch-by-patch computation,
native vs ngspice, EP vs exact gradients vs finite differences, persistence, the config's
`analog.layers`, and one-line errors for bad layer specs."""
import shutil

import numpy as np
import pytest

from analog import (AnalogModel, Amplification, BiasVoltage, Concatenate, CurrentLayer, Dense, DiodeLayer,
                    InputVoltage, LocallyConnected2D, pixel_nodes)
from analog.ep import ep_gradients, exact_gradients
from analog.losses import MSE
from analog.netlist import NetlistPlan
from pipeline.config import ConfigError, config_dict, validate_config

H, W = 5, 6


def lc_block(seed=0, gmin=1e-12, padding="valid"):
    """5×6 pixels (± → 2 channels) + 2 bias columns → LC 3×3 stride (2, 2), 2 filters
    (2×2×2 = 8 nodes; 'same': 3×3×2 = 18) → diodes up/down → amplifier 4 → dense 6 → 3
    differential outputs."""
    x = InputVoltage(H * W, name="in")
    img = pixel_nodes(x, (H, W, 1))
    lc = LocallyConnected2D(2, kernel=(3, 3), strides=(2, 2), input_shape=(H, W, 2), seed=seed, name="lc",
                            padding=padding)
    h = lc(Concatenate(name="c1")([img, BiasVoltage([1.0, -1.0], name="b1")]))
    h = Amplification(4.0, name="amp")(DiodeLayer("down", 0.3, name="dd")(DiodeLayer("up", -0.3, name="du")(h)))
    y = CurrentLayer(name="nudge")(Dense(6, seed=seed + 1, name="out")(
        Concatenate(name="c2")([h, BiasVoltage([1.0, -1.0], name="b2")])))
    return AnalogModel(x, y, gmin=gmin, name="lc_block")


@pytest.mark.parametrize("h_,w_,kh,kw,sh,sw,padding,out_hw", [
    (5, 7, 3, 2, 2, 3, "valid", (2, 2)),
    (5, 7, 3, 2, 2, 3, "same", (3, 3)),       # odd padding: 0 above, 0 left … 1 below, 1 right
    (6, 5, 4, 3, 1, 2, "same", (6, 3)),       # 3 rows of padding: 1 above, 2 below
    (4, 4, 3, 3, 1, 1, "same", (4, 4)),
])
def test_linear_layer_is_the_weighted_mean_of_each_patch(h_, w_, kh, kw, sh, sw, padding, out_hw):
    """No diodes, no amplifier, no gmin: each output node of the LC layer floats at the
    conductance-weighted mean of its patch's source voltages (KCL at the node); with
    'same' padding the image is padded with zero pixels (0 V = V_ref), Keras's rule: output
    size ⌈n / s⌉, padding (out − 1)·s + k − n split with the odd one below / right."""
    filters = 2
    x = InputVoltage(h_ * w_, name="in")
    lc = LocallyConnected2D(filters, kernel=(kh, kw), strides=(sh, sw), input_shape=(h_, w_, 2), name="lc",
                            padding=padding)
    y = CurrentLayer(name="nudge")(lc(pixel_nodes(x, (h_, w_, 1))))
    m = AnalogModel(x, y, gmin=0.0)
    oh, ow = out_hw
    assert lc.output_shape == (oh, ow, filters)
    rng = np.random.default_rng(3)
    G = rng.uniform(1e-7, 2e-5, (oh * ow * filters, kh * kw * 2))
    m.set_conductances([G])
    X = rng.uniform(-1, 1, (5, h_ * w_))
    v = m.get_engine("native").solve([G], X).v
    # independent: the ± image padded explicitly; output node (i, j, f) is row (i·ow + j)·filters
    # + f; its entry (di, dj, ch) is column (di·kw + dj)·2 + ch; channel 0 is V_ref + x, 1 is V_ref − x
    img = np.stack([X.reshape(5, h_, w_), -X.reshape(5, h_, w_)], axis=-1)
    ph, pw = max((oh - 1) * sh + kh - h_, 0), max((ow - 1) * sw + kw - w_, 0)
    if padding == "same":
        img = np.pad(img, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    expected = np.zeros((5, oh * ow * filters))
    for i in range(oh):
        for j in range(ow):
            for f in range(filters):
                row = (i * ow + j) * filters + f
                num = den = 0.0
                for di in range(kh):
                    for dj in range(kw):
                        for ch in range(2):
                            g = G[row, (di * kw + dj) * 2 + ch]
                            num, den = num + g * img[:, i * sh + di, j * sw + dj, ch], den + g
                expected[:, row] = num / den
    np.testing.assert_allclose(v, expected, rtol=0, atol=1e-12)


def test_same_padding_entries_are_resistors_to_one_zero_volt_source():
    m = lc_block(padding="same")
    c, lc = m.circuit, m.dense_layers[0]
    assert lc.output_shape == (3, 3, 2) and lc.G.shape == (18, 3 * 3 * 2 + 2)
    zero = c.source_names.index("lc_zero")
    assert c.source_levels[zero] == 0.0
    blk = c.dense[0]
    assert blk.in_terms[-1] == c.n_free + zero and len(blk.in_terms) == 2 * H * W + 2 + 1
    # padding (3 − 1)·2 + 3 − 5 = 2 rows (1 above, 1 below), (3 − 1)·2 + 3 − 6 = 1 column (right):
    # the top-left position misses its first row of pixels (3 pixels, ± → 6 entries of 18), the
    # bottom-right one its last row and column (5 pixels → 10 entries)
    pad_col = len(blk.in_terms) - 1
    assert np.count_nonzero(lc.cols[0] == pad_col) == 6
    assert np.count_nonzero(lc.cols[(2 * 3 + 2) * 2] == pad_col) == 10
    assert np.count_nonzero(lc.cols[(1 * 3 + 1) * 2] == pad_col) == 0      # the centre sees a full patch
    x = np.zeros((1, H * W))
    text = NetlistPlan(c).text(m.conductances, c.source_voltages(x)[0])
    assert sum(line.startswith("R0_") for line in text.splitlines()) == 18 * 20
    assert any(line.lower().startswith("v_lc_zero ") for line in text.splitlines())


def test_sparse_storage_and_netlist_one_resistor_per_patch_edge():
    m = lc_block()
    lc = m.dense_layers[0]
    n_in = 2 * H * W + 2
    assert lc.G.shape == (8, 3 * 3 * 2 + 2) and lc.cols.shape == lc.G.shape
    assert lc.G.size == 160 and 8 * n_in == 496          # a dense crossbar would need 496
    # the two bias columns (after the 60 image nodes) feed every output
    assert np.all(lc.cols[:, -2:] == [60, 61])
    text = NetlistPlan(m.circuit).text(m.conductances, m.circuit.source_voltages(np.zeros((1, H * W)))[0])
    assert sum(line.startswith("R0_") for line in text.splitlines()) == 160
    assert sum(line.startswith("R1_") for line in text.splitlines()) == 6 * (8 + 2)


def force_pcg(monkeypatch):
    """Solve the Schur complement by conjugate gradients on any circuit (by default only
    from 24 kept nodes with 4× as many eliminated, as behind a 28×28 LC layer)."""
    import analog.schur as schur
    monkeypatch.setattr(schur, "PCG_MIN_ORDER", 1)
    monkeypatch.setattr(schur, "PCG_MIN_RATIO", 0)


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
@pytest.mark.parametrize("padding,solver", [("valid", "direct"), ("same", "direct"), ("valid", "pcg")])
def test_native_and_ngspice_agree_on_a_locally_connected_block(padding, solver, monkeypatch):
    from analog.ngspice import NgspiceEngine
    if solver == "pcg":
        force_pcg(monkeypatch)
    m = lc_block(seed=4, padding=padding)
    c, G = m.circuit, m.conductances
    rng = np.random.default_rng(5)
    x = rng.uniform(-1.5, 1.5, (6, H * W))
    nudge = rng.normal(0, 5e-6, (6, c.n_outputs))
    for nd in (None, nudge):
        native = m.get_engine("native").solve(G, x, nudge=nd)
        with NgspiceEngine(c, processes=2) as eng:
            spice = eng.solve(G, x, nudge=nd)
        assert native.converged.all() and spice.converged.all()
        np.testing.assert_allclose(spice.v, native.v, rtol=0, atol=1e-6)
        np.testing.assert_allclose(spice.source_currents, native.source_currents, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(spice.power, native.power, rtol=1e-6, atol=1e-12)


def _cos(a, b):
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("padding,solver", [("valid", "direct"), ("same", "direct"), ("valid", "pcg")])
def test_ep_and_exact_gradients_and_finite_differences(padding, solver, monkeypatch):
    if solver == "pcg":
        force_pcg(monkeypatch)
    m = lc_block(seed=2, padding=padding)
    c, G = m.circuit, m.conductances
    eng = m.get_engine("native")
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, (12, H * W))
    labels = rng.integers(0, 3, 12)
    loss = MSE()
    exact = exact_gradients(eng, c, G, x, labels, loss)
    ep = ep_gradients(eng, c, G, x, labels, loss, 1e-7, "symmetric", input_grad=True)
    for ge, gp in zip(exact.grads, ep.grads):
        assert ge.shape == gp.shape
        assert _cos(ge, gp) >= 0.999
    assert _cos(exact.input_grad, ep.input_grad) >= 0.999

    def cost(G_list, xx=x):
        s = eng.solve(G_list, xx)
        return loss(c.outputs(s.v), labels)[0].mean()

    # central differences on a few LC conductances (an independent derivative)
    for row, col in [(0, 0), (3, 7), (7, 17), (5, 19)]:
        h = 1e-9
        Gp = [g.copy() for g in G]
        Gm = [g.copy() for g in G]
        Gp[0][row, col] += h
        Gm[0][row, col] -= h
        fd = (cost(Gp) - cost(Gm)) / (2 * h)
        assert fd == pytest.approx(exact.grads[0][row, col], rel=1e-4, abs=1e-3 * np.abs(exact.grads[0]).max())
    # and one input feature: C is a mean over samples, input_grad per sample
    k, j, h = 3, 8, 1e-6
    xp, xm = x.copy(), x.copy()
    xp[k, j] += h
    xm[k, j] -= h
    fd = (cost(G, xp) - cost(G, xm)) / (2 * h) * len(x)
    assert fd == pytest.approx(exact.input_grad[k, j], rel=1e-4, abs=1e-8)


def test_energy_is_stationary_and_power_matches_the_branches():
    """total_energy's gradient vanishes at the operating point; power = Σ G ΔV² over the patch
    edges (+ devices + gmin), computed here from the edges one by one."""
    from analog.native import total_energy
    m = lc_block(seed=8)
    c, G = m.circuit, m.conductances
    x = np.random.default_rng(9).uniform(-1, 1, (3, H * W))
    s = m.get_engine("native").solve(G, x)
    V = c.terminal_voltages(s.v, s.src)
    e0 = total_energy(c, G, s.v, s.src)
    for f in (0, 5, 9):
        dv = np.zeros_like(s.v)
        dv[:, f] = 1e-6
        slope = (total_energy(c, G, s.v + dv, s.src) - total_energy(c, G, s.v - dv, s.src)) / 2e-6
        assert np.all(np.abs(slope) < 1e-12 + 1e-6 * np.abs(e0).max())
    blk, Glc = c.dense[0], G[0]
    p = np.zeros(3)
    for i in range(Glc.shape[0]):
        for e in range(Glc.shape[1]):
            dvv = V[:, blk.out_terms[i]] - V[:, blk.in_terms[blk.cols[i, e]]]
            p += Glc[i, e] * dvv ** 2
    from analog.solution import dissipated_power
    only_lc = dissipated_power(c, [Glc, np.zeros_like(G[1])], s.v, s.src)
    rest = dissipated_power(c, [np.zeros_like(Glc), np.zeros_like(G[1])], s.v, s.src)
    np.testing.assert_allclose(only_lc - rest, p, rtol=1e-9)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_save_load_round_trip(tmp_path, padding):
    m = lc_block(seed=3, padding=padding)
    x = np.random.default_rng(1).uniform(-1, 1, (4, H * W))
    before = m.get_engine("native").solve(m.conductances, x).v
    m.save(tmp_path / "m")
    back = AnalogModel.load(tmp_path / "m")
    lc = back.dense_layers[0]
    assert isinstance(lc, LocallyConnected2D) and lc.kernel == (3, 3) and lc.strides == (2, 2)
    assert lc.padding == padding and back.circuit.source_names == m.circuit.source_names
    np.testing.assert_array_equal(lc.cols, m.dense_layers[0].cols)
    for a, b in zip(back.conductances, m.conductances):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.get_engine("native").solve(back.conductances, x).v, before)


def test_config_layers_build_the_block_and_hidden_stays_the_short_form():
    from pipeline.system.analog_block import model_from_config
    cfg = validate_config({"name": "lc", "data": {"dataset": "iris"}, "analog": {"layers": [
        {"type": "locally_connected2d", "kernel": [2, 2], "strides": 1, "filters": 3, "input_shape": [3, 4, 1]},
        {"type": "dense", "units": 5, "gain": 2.0}]}})
    assert cfg.analog.hidden == [2 * 3 * 3, 5]
    assert validate_config(config_dict(cfg)).analog == cfg.analog          # a saved config validates again
    m = model_from_config(cfg, 12, 3, compile=False)
    assert [type(l).__name__ for l in m.dense_layers] == ["LocallyConnected2D", "Dense", "Dense"]
    assert m.dense_layers[0].G.shape == (18, 2 * 2 * 2 + 2)
    assert sorted(m.circuit.amp_gain.tolist()) == [2.0] * 5 + [4.0] * 18
    short = model_from_config(validate_config({"name": "d", "analog": {"hidden": [6]}}), 4, 3, compile=False)
    listed = model_from_config(validate_config({"name": "d", "analog": {"layers": [{"type": "dense", "units": 6}]}}),
                               4, 3, compile=False)
    assert [l.name for l in short.dense_layers] == [l.name for l in listed.dense_layers] == ["dense1", "dense2"]
    for a, b in zip(short.conductances, listed.conductances):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"^analog\.layers\[0\]\.input_shape=\[3, 4, 1\]: must hold the block's 10"):
        model_from_config(cfg, 10, 3, compile=False)


@pytest.mark.parametrize("layers,message", [
    ([{"type": "locally_connected2d", "kernel": [5, 2], "filters": 2, "input_shape": [4, 4, 1]}],
     r"analog\.layers\[0\]\.kernel=\[5, 2\]: larger than the input"),
    ([{"type": "locally_connected2d", "kernel": 2, "strides": [1, 0], "filters": 2, "input_shape": [4, 4, 1]}],
     r"analog\.layers\[0\]\.strides=\[1, 0\]: must be > 0"),
    ([{"type": "locally_connected2d", "kernel": 2, "strides": -1, "filters": 2, "input_shape": [4, 4, 1]}],
     r"analog\.layers\[0\]\.strides=-1: must be > 0"),
    ([{"type": "dense", "units": 10}, {"type": "locally_connected2d", "kernel": 2, "filters": 1,
                                        "input_shape": [3, 3, 1]}],
     r"analog\.layers\[1\]\.input_shape=\[3, 3, 1\]: the layers do not chain"),
    ([{"type": "dense", "units": 10}, {"type": "locally_connected2d", "kernel": 2, "filters": 1}],
     r"analog\.layers\[1\]\.input_shape: required after a dense layer"),
    ([{"type": "dense", "units": 4}, {"type": "conv2d", "units": 3}],
     r"analog\.layers\[1\]\.type='conv2d': unknown layer type"),
    ([{"type": "dense", "units": 4, "kernel": 3}], r"analog\.layers\[0\]\.kernel: unknown key for a dense layer"),
    ([{"type": "dense", "units": 0}], r"analog\.layers\[0\]\.units=0: must be a positive integer"),
    ([{"type": "locally_connected2d", "kernel": 2, "filters": 2}], r"analog\.layers\[0\]\.input_shape: required"),
    ([{"type": "locally_connected2d", "kernel": 2, "filters": 2, "input_shape": [4, 4, 1], "padding": "full"}],
     r"analog\.layers\[0\]\.padding='full': must be 'valid' or 'same'"),
    ([{"type": "locally_connected2d", "kernel": [2, 5], "filters": 2, "input_shape": [4, 4, 1], "padding": "same"}],
     r"analog\.layers\[0\]\.kernel=\[2, 5\]: larger than the input"),
    ([{"type": "locally_connected2d", "kernel": 2, "strides": [0, 1], "filters": 2, "input_shape": [4, 4, 1],
       "padding": "same"}], r"analog\.layers\[0\]\.strides=\[0, 1\]: must be > 0"),
    ([{"type": "locally_connected2d", "kernel": 3, "filters": 2, "input_shape": [5, 5, 1], "padding": "same"},
      {"type": "locally_connected2d", "kernel": 2, "filters": 1, "input_shape": [3, 3, 2]}],
     r"analog\.layers\[1\]\.input_shape=\[3, 3, 2\]: the layers do not chain, the previous layer has 50 nodes"),
])
def test_bad_layer_specs_are_one_line_errors_naming_layer_and_key(layers, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate_config({"name": "bad", "analog": {"layers": layers}})
    assert "\n" not in str(info.value)


def test_config_same_padding_sizes_the_layers_and_builds_the_block():
    from pipeline.system.analog_block import model_from_config
    cfg = validate_config({"name": "lc", "data": {"dataset": "iris"}, "analog": {"layers": [
        {"type": "locally_connected2d", "kernel": 3, "strides": 2, "filters": 2, "input_shape": [5, 6, 1],
         "padding": "same"},
        {"type": "locally_connected2d", "kernel": 2, "filters": 1, "padding": "same"}]}})
    assert cfg.analog.hidden == [3 * 3 * 2, 3 * 3 * 1]
    assert cfg.analog.layers[1]["input_shape"] == [3, 3, 2]
    m = model_from_config(cfg, 30, 3, compile=False)
    lc1, lc2 = m.dense_layers[:2]
    assert lc1.padding == lc2.padding == "same" and lc1.output_shape == (3, 3, 2) and lc2.output_shape == (3, 3, 1)
    assert lc1.G.shape == (18, 3 * 3 * 2 + 2) and lc2.G.shape == (9, 2 * 2 * 2 + 2)
    assert {"lc1_zero", "lc2_zero"} <= set(m.circuit.source_names)


def test_hidden_and_layers_must_agree():
    with pytest.raises(ConfigError, match=r"analog\.hidden=\[7\] and analog\.layers .* disagree"):
        validate_config({"name": "b", "analog": {"hidden": [7], "layers": [{"type": "dense", "units": 6}]}})


def test_api_errors_name_the_layer_and_key():
    with pytest.raises(ValueError, match=r"LocallyConnected2D 'q': kernel=\[4, 4\] is larger than the input"):
        LocallyConnected2D(1, kernel=4, input_shape=(3, 5, 1), name="q")
    with pytest.raises(ValueError, match=r"LocallyConnected2D 'q': strides=\(0, 1\) must be > 0"):
        LocallyConnected2D(1, kernel=2, strides=(0, 1), input_shape=(3, 5, 1), name="q")
    with pytest.raises(ValueError, match=r"LocallyConnected2D 'q': padding='full' must be 'valid' or 'same'"):
        LocallyConnected2D(1, kernel=2, padding="full", input_shape=(3, 5, 1), name="q")
    with pytest.raises(ValueError, match=r"LocallyConnected2D 'q': kernel=\[4, 4\] is larger than the input"):
        LocallyConnected2D(1, kernel=4, padding="same", input_shape=(3, 5, 1), name="q")
    x = InputVoltage(6)
    with pytest.raises(ValueError, match=r"LocallyConnected2D 'q': input_shape=\[3, 5, 1\] needs 15 image nodes"):
        LocallyConnected2D(1, kernel=2, input_shape=(3, 5, 1), name="q")(x)
    with pytest.raises(ValueError, match=r"pixel_nodes: 12 input nodes cannot be an image of shape \(2, 2, 1\)"):
        pixel_nodes(x, (2, 2, 1))


def test_digits_is_a_tabular_set_of_8x8_pixels():
    from pipeline.data import load_dataset
    d = load_dataset({"dataset": "digits", "test_fraction": 0.2}, seed=0)
    assert d.x_train.shape[1] == 64 and d.n_classes == 10
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 1797
    cfg = validate_config({"name": "d", "data": {"dataset": "digits"}, "analog": {"layers": [
        {"type": "locally_connected2d", "kernel": [3, 3], "filters": 2, "input_shape": [8, 8, 1]},
        {"type": "dense", "units": 32}]}})
    assert cfg.analog.hidden == [72, 32]


@pytest.mark.parametrize("padding", ["valid", "same", None])
def test_source_map_from_the_edges_equals_the_identity_through_the_crossbars(padding):
    """NativeEngine builds the affine map c = src @ C + c0 of the nodal residual from the
    crossbar edges; pushing each unit source voltage through the crossbars (the old way,
    n_sources solves' worth of arithmetic) gives the same matrix."""
    from analog import build_dense_network
    from analog.circuit import vary_circuit
    if padding is None:    # a dense block whose first amplifier layer has per-node gains (per-row scales)
        m = build_dense_network(7, 3, (5, 4), seed=1)
        c = vary_circuit(m.circuit, amp_gain=np.linspace(2.0, 5.0, 9).round(1).tolist()[:5] + [4.0] * 4)
    else:
        m = lc_block(seed=5, padding=padding)
        c = m.circuit
    from analog.native import NativeEngine
    eng = NativeEngine(c)
    G = [g * np.random.default_rng(2).uniform(0.5, 1.0, g.shape) for g in m.conductances]
    C = eng._linear(G)["C"]
    C = C.toarray() if hasattr(C, "toarray") else C     # CSR on a locally connected block
    n_s = c.n_sources
    c0 = eng._offset_residual_direct(G, np.zeros((1, n_s)))
    np.testing.assert_allclose(C, eng._offset_residual_direct(G, np.eye(n_s)) - c0, rtol=1e-12, atol=1e-22)
