"""Ternary and binary weights on RRAM 2T2R pairs against the 4-level and continuous devices
(docs/results-ternary.md; `mixsig ternary`), on a config's block, data and training section.

Rows (same block, same initial conductances):
  continuous            ideal EP (`AnalogModel.fit`), the block as trained
  4-level               in-situ EP, stochastic pulses of one level (`ebana-4level`), on the chip
  ternary, binary       each chip (`rram-2t2r`, `rram-2t2r-binary`) programmed from the untrained
                        block, then trained in the loop (`finetune` with a PairOptimizer: hidden
                        weights, a pair rewritten when its hidden weight crosses the threshold,
                        programming bit errors on every write, read bit errors on every read)
  ternary (programmed)  the continuous block ternarised and programmed, no training on the chip
`sweep`: accuracy against the bit error rate: (a) the states trained on chip 0 at the preset's
rates programmed onto fresh chips with bit error rate p (programming and reading); (b) training
in the loop at rate p.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

RATES = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
FOUR_LEVEL = ("hardware.preset=ebana-4level", "hardware.training=in-situ", "hardware.pulse_rule=stochastic")


def volts(cfg):
    """(x_train, y_train, x_test, y_test, n_classes) in volts: tabular sets scaled to the input
    amplitude; images through a PCA to digital.embedding_dim fitted on the training set, ±3 σ
    of each component mapped to ±amplitude."""
    from pipeline.data import load_dataset, tabular_to_volts
    ds = load_dataset(cfg.data, seed=cfg.seed)
    amp = cfg.analog.input_amplitude
    if ds.x_train.ndim > 2:
        from sklearn.decomposition import PCA
        flat_tr = ds.x_train.reshape(len(ds.x_train), -1) / 255.0
        flat_te = ds.x_test.reshape(len(ds.x_test), -1) / 255.0
        pca = PCA(n_components=cfg.digital.embedding_dim, random_state=0).fit(flat_tr)
        z_tr, z_te = pca.transform(flat_tr), pca.transform(flat_te)
        sd = 3 * z_tr.std(0, keepdims=True) + 1e-12
        return (np.clip(z_tr / sd, -1, 1) * amp, ds.y_train.astype(int), np.clip(z_te / sd, -1, 1) * amp,
                ds.y_test.astype(int), ds.n_classes)
    x_tr, x_te = tabular_to_volts(ds.x_train, ds.x_test, amplitude=amp)
    return x_tr, ds.y_train.astype(int), x_te, ds.y_test.astype(int), ds.n_classes


def _block(load, x_tr, n_classes, extra=()):
    """The config's block (load(extra overrides) → config), compiled by its training section."""
    from pipeline.system.analog_block import model_from_config
    cfg = load(extra)
    return model_from_config(cfg, x_tr.shape[1], n_classes), cfg


def train_on_chip(model, spec, x, y, epochs, seed, lr, batch_size):
    """A chip programmed from `model`, trained in the loop with hidden weights (Adam, lr)."""
    from analog.hardware import PairOptimizer, finetune, pair_maps, program
    chip = program(model, spec, seed=seed)
    opt = PairOptimizer(chip.spec, pair_maps(model.circuit), lr=lr, base="adam", seed=seed)
    finetune(chip, x, y, loss=model.loss, beta=model.beta, optimizer=opt, epochs=epochs, batch_size=batch_size,
             seed=seed)
    return chip, opt


def compare(load, data, chips: int, lr: float) -> dict:
    """The rows of the module docstring: {row: {'test': [accuracy per chip], ...}}."""
    from analog.hardware import program, resolve_hardware
    x_tr, y_tr, x_te, y_te, n_classes = data
    rows, t0 = {}, time.perf_counter()
    model, cfg = _block(load, x_tr, n_classes)
    epochs, bs = cfg.training.epochs, cfg.training.batch_size
    model.fit(x_tr, y_tr, epochs=epochs, batch_size=bs, verbose=0, seed=cfg.seed)
    rows["continuous"] = {"test": [model.evaluate(x_te, y_te)["accuracy"]], "seconds": time.perf_counter() - t0}
    ter = resolve_hardware("rram-2t2r")
    rows["ternary (programmed)"] = {"test": [program(model, ter, seed=s).accuracy(x_te, y_te, 0.0) for s in range(chips)]}
    t0 = time.perf_counter()
    four, cfg4 = _block(load, x_tr, n_classes, FOUR_LEVEL)
    four.fit(x_tr, y_tr, epochs=epochs, batch_size=bs, verbose=0, seed=cfg4.seed)
    rows["4-level"] = {"test": [program(four, "ebana-4level", seed=0).accuracy(x_te, y_te, 0.0)],
                       "seconds": time.perf_counter() - t0}
    for label, preset in (("ternary", "rram-2t2r"), ("binary", "rram-2t2r-binary")):
        accs, reprog, t0 = [], [], time.perf_counter()
        for s in range(chips):
            fresh, _ = _block(load, x_tr, n_classes)
            chip, opt = train_on_chip(fresh, resolve_hardware(preset), x_tr, y_tr, epochs, s, lr, bs)
            accs.append(chip.accuracy(x_te, y_te, 0.0))
            reprog.append(opt.reprogrammed)
        rows[label] = {"test": accs, "reprogrammed_pairs": reprog, "seconds": time.perf_counter() - t0}
    return rows


def sweep(load, data, chips: int, lr: float, say=print) -> dict:
    """{str(p): {'deployed': [accuracy per chip], 'trained_at_rate': accuracy}} per bit error rate p."""
    from analog.hardware import program, resolve_hardware
    x_tr, y_tr, x_te, y_te, n_classes = data
    base = resolve_hardware("rram-2t2r")
    model, cfg = _block(load, x_tr, n_classes)
    epochs, bs = cfg.training.epochs, cfg.training.batch_size
    _, opt = train_on_chip(model, base, x_tr, y_tr, epochs, 0, lr, bs)
    model.set_conductances(opt.intended(model.dense_layers))
    out = {}
    for p in RATES:
        spec = dataclasses.replace(base, device=dataclasses.replace(base.device, bit_error=p, read_bit_error=p))
        deployed = [program(model, spec, seed=100 + s).accuracy(x_te, y_te, 0.0) for s in range(chips)]
        fresh, _ = _block(load, x_tr, n_classes)
        chip, _ = train_on_chip(fresh, spec, x_tr, y_tr, epochs, 0, lr, bs)
        out[str(p)] = {"deployed": deployed, "trained_at_rate": chip.accuracy(x_te, y_te, 0.0)}
        say(f"bit error rate {p:g}: deployed {np.mean(deployed):.3f}, trained at the rate "
            f"{out[str(p)]['trained_at_rate']:.3f}")
    return out
