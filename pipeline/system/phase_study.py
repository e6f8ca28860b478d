"""What a cut-short phase costs (docs/transient.md, "What a cut-short phase costs"; `mixsig
phases`): on a config's tabular data and block, the cosine to the exact gradient of EP with
the free and nudged phases cut at each pair of durations (analog.training_energy.
cut_short_cosines), at the initial conductances and after EP training, and the test accuracy
after training (`AnalogModel.fit` with `PhaseCut`) read at the operating point and at t."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import OptionError

if TYPE_CHECKING:
    from pipeline.config import RootConfig

GRID_SAMPLES = 32       # training samples the cosine grid is measured on


def _data(cfg: RootConfig):
    from pipeline.data import load_dataset, tabular_to_volts
    ds = load_dataset(cfg.data, seed=cfg.seed)
    if ds.x_train.ndim != 2:
        raise OptionError(f"mixsig phases: data.dataset={cfg.data.dataset} is not tabular (iris, wine, xor)")
    x_tr, x_te = tabular_to_volts(ds.x_train, ds.x_test, amplitude=cfg.analog.input_amplitude)
    return x_tr, ds.y_train.astype(int), x_te, ds.y_test.astype(int), ds.n_classes


def _block(cfg: RootConfig, n_features: int, n_classes: int, phases=None):
    """The config's block, compiled by its training section (with `phases`, cut short)."""
    from analog.training_setup import compile_model
    from pipeline.system.analog_block import analog_specs, model_from_config
    model = model_from_config(cfg, n_features, n_classes, compile=False)
    return compile_model(model, analog_specs(cfg).training, phases=phases)


def _train(cfg, data, phases) -> tuple[float, float]:
    """Test accuracy after training with `phases`, read at the operating point and at the
    end of a free phase of t_free."""
    x_tr, y_tr, x_te, y_te, n_classes = data
    m = _block(cfg, x_tr.shape[1], n_classes, phases)
    m.fit(x_tr, y_tr, epochs=cfg.training.epochs, batch_size=cfg.training.batch_size, verbose=0, seed=cfg.seed)
    acc = m.accuracy(x_te, y_te)
    from analog.training_energy import PhaseCut
    read = PhaseCut(phases.t_free, phases.t_free, phases.steps).predict(m, x_te)
    return acc, float((read.argmax(1) == y_te).mean())


def run_study(cfg: RootConfig, durations, pairs, steps: int, grid: bool, say=print) -> dict:
    """{'durations', 'grids': {state: (grid, ep cosine)}, 'ep_accuracy', 'trained': [(t_free,
    t_nudged, acc at the operating point, acc read at t_free)]}; durations in s."""
    from analog.training_energy import PhaseCut, cut_short_cosines
    if cfg.hardware is not None:
        raise OptionError("mixsig phases trains the ideal block; the config has a hardware: section")
    data = _data(cfg)
    x_tr, y_tr, x_te, y_te, n_classes = data
    xg, yg = x_tr[:GRID_SAMPLES], y_tr[:GRID_SAMPLES]
    out = {"durations": list(durations), "grids": {}, "trained": []}
    m = _block(cfg, x_tr.shape[1], n_classes)
    if grid:
        out["grids"]["initial"] = cut_short_cosines(m, xg, yg, durations, steps)
    m.fit(x_tr, y_tr, epochs=cfg.training.epochs, batch_size=cfg.training.batch_size, verbose=0, seed=cfg.seed)
    out["ep_accuracy"] = m.accuracy(x_te, y_te)
    say(f"EP at the operating points: test accuracy {out['ep_accuracy']:.3f}")
    if grid:
        out["grids"]["trained"] = cut_short_cosines(m, xg, yg, durations, steps)
    for t_free, t_nudged in pairs:
        acc = _train(cfg, data, PhaseCut(t_free, t_nudged, steps))
        out["trained"].append((t_free, t_nudged, *acc))
        say(f"free {t_free * 1e12:g} ps, nudged {t_nudged * 1e12:g} ps: test {acc[0]:.3f}, read at t {acc[1]:.3f}")
    return out
