"""In-situ EP fine-tuning of a programmed chip: the programming errors trained out on the chip.

    hist = finetune(chip, x, y, loss=model.loss, beta=model.beta, optimizer=PulsedOptimizer(spec, lr=1e-3),
                    epochs=1)

Each mini-batch:
  1. one read of the chip's current state at time t (`Chip.conductances_at`: the realised
     conductances with their drift and a fresh read-noise draw, compensated as the chip
     is), on the chip's realised circuit (varied diodes and amplifiers);
  2. the free and nudged EP solves on that read give ∂C/∂G (analog.ep.ep_gradients),
     i.e. the gradient of the chip as it is, not of the ideal block;
  3. the optimiser turns the update into device pulses (`PulsedOptimizer`: state-dependent,
     noisy, saturating steps) applied to the chip's stored device state; stuck devices
     receive no pulse and keep their value.

The chip is changed in place (its programmed conductances become the fine-tuned state;
drift exponents and stuck map are those of the devices, unchanged). At a time t after
drift has begun, the pulses act on each device's conductance as it has drifted to t, and a
device that took pulses counts as programmed at t (it drifts from t on); the others keep
drifting from their programming (`Chip.set_programmed(G, t)`). Knows nothing of Keras
or MLflow.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .programming import STUCK_NONE


@dataclass
class _Cells:
    """A crossbar's devices as the optimisers see a layer (trained units: device / k)."""
    G: np.ndarray
    g_min: float
    g_max: float
    lr_scale: float = 1.0
    trainable: bool = True


def finetune(chip, x, y, *, loss, beta: float, optimizer, epochs: int = 1, batch_size: int = 64,
             nudging: str = "symmetric", t: float = 0.0, seed: int = 0, progress: bool = False,
             on_epoch=None, readable_targets: bool = True) -> dict:
    """EP on the chip, `epochs` passes over (x, y); returns the history {key: [per epoch]}:
    loss, accuracy (on the noisy reads the solves saw, non-converged counted wrong), pulses
    (given per epoch), pulses_per_device, moved_rel (mean |ΔG|/g_max of the epoch, device
    units), skipped (samples left out of an update: some EP phase failed), seconds.
    `on_epoch(epoch, logs)` is called after every epoch. With `readable_targets` an MSE's
    targets are clipped onto the ADC's full scale first (`readable_loss`)."""
    from ..ep import ep_gradients
    x, y, layers = _checked(chip, x, y, epochs, batch_size)
    loss = readable_loss(chip, loss) if readable_targets else loss
    g_max_dev = chip.spec.device.g_max
    state = chip.device_conductances_at(t, noise=False)     # the devices as they are at t
    cells = [_Cells(G / k, layer.g_min, layer.g_max, layer.lr_scale, layer.trainable)
             for G, k, layer in zip(state, chip.scale, layers)]
    stuck = [s != STUCK_NONE for s in chip.stuck]
    pinned = [c.G[s].copy() for c, s in zip(cells, stuck)]
    engine = chip.engine("native")
    hist: dict = {k: [] for k in ("loss", "accuracy", "pulses", "pulses_per_device", "moved_rel", "skipped",
                                  "seconds")}
    n_dev = sum(c.G.size for c in cells)
    from analog.progress import progress as progress_bar
    for epoch in range(int(epochs)):
        optimizer.epoch = epoch
        t0 = time.perf_counter()
        before = [c.G.copy() for c in cells]
        order = np.random.default_rng([seed, epoch, 11]).permutation(len(x))
        tot = dict(loss=0.0, correct=0, ok=0, skipped=0, pulses=0)
        bar = progress_bar(len(x), f"in-situ epoch {epoch + 1}/{epochs} (chip seed {chip.seed})", "sample",
                           enabled=progress, every=None)       # off a terminal: one line per epoch
        for lo in range(0, len(x), batch_size):
            idx = order[lo: lo + batch_size]
            res = ep_gradients(engine, chip.circuit, chip.conductances_at(t),   # one noisy read of the chip as it is
                               x[idx], y[idx], loss, beta, nudging)
            _count(tot, res, y[idx])
            if res.used.any():
                grads = [np.where(s, 0.0, g) for g, s in zip(res.grads, stuck)]
                optimizer.apply(cells, grads)
                tot["pulses"] += int(getattr(optimizer, "last_pulses", 0))
                for c, s, p in zip(cells, stuck, pinned):
                    c.G[s] = p                                 # a stuck device takes no pulse
                _write_back(chip, cells, t)
            bar.update(len(idx))
        bar.close()
        moved = np.concatenate([(np.abs(c.G - b) * k).ravel() for c, b, k in zip(cells, before, chip.scale)])
        logs = {"loss": tot["loss"] / max(1, tot["ok"]), "accuracy": tot["correct"] / max(1, len(x)),
                "pulses": tot["pulses"], "pulses_per_device": tot["pulses"] / max(1, n_dev),
                "moved_rel": float(moved.mean() / g_max_dev) if moved.size else 0.0,
                "skipped": tot["skipped"], "seconds": time.perf_counter() - t0}
        for k, v in logs.items():
            hist[k].append(v)
        if on_epoch is not None:
            on_epoch(epoch, logs)
    return hist


def readable_loss(chip, loss):
    """The loss EP nudges the chip's outputs with: an MSE whose targets lie beyond the full
    scale ±R of the chip's quantising ADC gets them clipped onto ±R. The nudge sees the ADC's
    codes, which stop at ±R, so a target beyond R pushes an output past the end without limit:
    on the Fashion chip (targets ±0.5 V, calibrated R ≈ 0.3 V) one epoch drove most wrong-class
    outputs below the ADC's floor and the correct ones with them (docs/edges.md, "In-situ
    training through the edges"). Any other loss, or a chip without ADC bits, is kept."""
    from ..losses import MSE
    if type(loss) is not MSE or chip.converters is None or chip.spec.adc.bits is None:
        return loss
    r = chip.converters.adc_range
    hi, lo = min(loss.midpoint + loss.amplitude, r), max(loss.midpoint - loss.amplitude, -r)
    if (hi, lo) == (loss.midpoint + loss.amplitude, loss.midpoint - loss.amplitude) or hi <= lo:
        return loss          # targets readable already, or both beyond one end (nothing to clip onto)
    return MSE(midpoint=0.5 * (hi + lo), amplitude=0.5 * (hi - lo))


def _checked(chip, x, y, epochs, batch_size):
    """(x as floats, y, the chip model's dense layers), or ValueError naming what does not fit."""
    x, y = np.asarray(x, float), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != chip.circuit.n_features or len(x) != len(y):
        raise ValueError(f"finetune: x {x.shape} and y {y.shape} do not fit a chip of "
                         f"{chip.circuit.n_features} inputs")
    if not (isinstance(epochs, (int, np.integer)) and epochs >= 0):
        raise ValueError(f"finetune: epochs={epochs!r} must be an integer >= 0")
    if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
        raise ValueError(f"finetune: batch_size={batch_size!r} must be a positive integer")
    layers = chip.model.dense_layers if chip.model is not None else None
    if layers is None:
        raise ValueError("finetune: the chip has no model (load it with Chip.load on its folder)")
    return x, y, layers


def _count(tot: dict, res, y) -> None:
    """Add a batch's skipped samples, loss and correct answers (converged solves only) to `tot`."""
    tot["skipped"] += int((~res.used).sum())
    ok = res.free.converged
    tot["loss"] += float(res.loss[ok].sum())
    tot["correct"] += int((res.y[ok].argmax(1) == y[ok]).sum())
    tot["ok"] += int(ok.sum())


def _write_back(chip, cells, t: float) -> None:
    chip.set_programmed([c.G * k for c, k in zip(cells, chip.scale)], t)
