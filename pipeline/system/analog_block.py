"""Experiment config → analog block: the `analog`, `training` and `hardware` sections become
analog's typed specs in one place (`analog_specs`), which analog's builders take."""
from __future__ import annotations

from typing import NamedTuple

from pipeline.config import RootConfig, config_dict
from pipeline.config.layers import layer_specs
from pipeline.errors import InputError, SetupError

from analog.builders import build_network, make_device
from analog.errors import SpecError
from analog.model import AnalogModel
from analog.specs import BlockSpec, DiodeSpec, OptimizerSpec, TrainingSpec
from analog.training_setup import compile_model


class AnalogSpecs(NamedTuple):
    block: BlockSpec
    training: TrainingSpec
    hardware: object            # analog.hardware.HardwareTrainingSpec, None without a hardware section


def analog_specs(cfg: RootConfig, epochs: int | None = None) -> AnalogSpecs:
    """The block, its training (for `epochs`, default training.epochs) and how that training
    meets the devices, as analog's typed specs: the one conversion of the config for analog/."""
    a, t, o = cfg.analog, cfg.training, cfg.training.optimizer
    d = a.diode.model_dump(by_alias=True)
    biases = {k: d.pop(k) for k in ("up_bias", "down_bias")}
    block = BlockSpec(layers=layer_specs(a), vref=a.vref, input_amplitude=a.input_amplitude, g_min=a.g_min,
                      g_max=a.g_max, init=a.init, gain=a.gain, bias_levels=tuple(a.bias_levels), gmin=a.gmin,
                      diode=DiodeSpec(make_device(d.pop("model"), **d), **biases), seed=cfg.seed, name=cfg.name)
    training = TrainingSpec(
        loss=t.loss, temperature=t.temperature, mse_midpoint=t.mse_midpoint, mse_amplitude=t.mse_amplitude,
        beta=t.beta, nudging=t.nudging, algorithm=t.algorithm, cep_steps=t.cep_steps, gradient=t.gradient,
        engine=t.engine, workers=t.workers, epochs=t.epochs if epochs is None else epochs, batch_size=t.batch_size,
        optimizer=OptimizerSpec(o.name, o.lr, o.momentum, o.schedule, o.step_size, o.step_gamma))
    hardware = None
    if cfg.hardware is not None:
        from analog.hardware import HardwareTrainingSpec
        hardware = HardwareTrainingSpec(hardware_spec(cfg), cfg.hardware.training, cfg.hardware.pulse_rule,
                                        chip_seed_base(cfg))
    return AnalogSpecs(block, training, hardware)


def model_from_config(cfg: RootConfig, n_features: int, n_classes: int, compile: bool = True) -> AnalogModel:
    try:
        model = build_network(n_features, n_classes, analog_specs(cfg).block)
    except SpecError as exc:
        msg = str(exc)
        raise SetupError(f"analog.{msg}" if msg.startswith("layers[") else msg) from None
    model.config = config_dict(cfg)
    if compile:
        compile_from_config(model, cfg, cfg.training.epochs)
    return model


def hardware_spec(cfg: RootConfig):
    """The HardwareSpec of the config's `hardware` section (None without one)."""
    hw = cfg.hardware
    if hw is None:
        return None
    from analog.hardware import resolve_hardware
    from pipeline.config.schema import preset_overrides
    return resolve_hardware(hw.preset, preset_overrides(hw))


def chip_seed_base(cfg: RootConfig) -> int:
    """hardware.seed, or the config's seed when the section leaves it out."""
    return cfg.seed if cfg.hardware is None or cfg.hardware.seed is None else cfg.hardware.seed


def compile_from_config(model: AnalogModel, cfg: RootConfig, epochs: int) -> AnalogModel:
    """Compile `model` with the config's `training` section for `epochs` more epochs
    (analog.training_setup.compile_model: a model trained before keeps its optimiser state
    under the same optimiser). With a `hardware` section, `hardware.training` chooses how EP
    meets the devices (analog.hardware.training_rule: ideal, aware or in-situ); with
    `training.phases`, each step follows EP with its phases cut short (`phase_cut`)."""
    _, training, hw = analog_specs(cfg, epochs)
    rule = {}
    if hw is not None:
        from analog.hardware import training_rule
        rule = training_rule(training, hw, model.circuit, model.epoch)
    compile_model(model, training, phases=phase_cut(cfg), **rule)
    model.config = config_dict(cfg)
    return model


def phase_cut(cfg: RootConfig):
    """training.phases as the training rule AnalogModel.compile takes (analog.training_energy.
    PhaseCut), None without the key (EP at the operating points)."""
    p = cfg.training.phases
    if p is None:
        return None
    from analog.training_energy import PhaseCut
    return PhaseCut(p.t_free, p.t_nudged, p.steps)


def optimizer_for(cfg: RootConfig, chip):
    """The pulsed optimiser of one chip's fine-tuning: hardware.finetune_optimizer and
    finetune_lr (default: the configured optimiser's), the chip's devices, hardware.pulse_rule,
    seeded by the chip's seed, schedule over hardware.finetune_epochs."""
    import dataclasses

    from analog.hardware import chip_optimizer
    hw, o = cfg.hardware, analog_specs(cfg).training.optimizer
    o = dataclasses.replace(o, name=hw.finetune_optimizer or o.name, lr=hw.finetune_lr or o.lr)
    return chip_optimizer(o, hw.finetune_epochs, chip, hw.pulse_rule)


def migrate_legacy_model(old, new) -> AnalogModel:
    """Rebuild a model saved by an earlier release (model.pkl beside a model.json summary
    holding the experiment config, and conductances.npz) from its config and conductances,
    and save it in today's format (model.json + arrays.npz). The optimiser state (Adam's
    moments) was only in the pickle, so training resumes with a fresh one."""
    import json
    from pathlib import Path

    import numpy as np

    from pipeline.config import validate_config

    old, new = Path(old), Path(new)
    try:
        summary = json.loads((old / "model.json").read_text())
        with np.load(old / "conductances.npz", allow_pickle=False) as z:
            G = {k: z[k] for k in z.files}
    except FileNotFoundError as exc:
        raise InputError(f"{old}: cannot migrate, missing {Path(exc.filename).name}") from None
    cfg = summary.get("config") if isinstance(summary, dict) else None
    if not cfg:
        raise InputError(f"{old / 'model.json'}: has no experiment config to rebuild the block from")
    cfg = validate_config(cfg)
    layers = [f"dense{k + 1}" for k in range(len(cfg.analog.hidden) + 1)]
    if sorted(G) != sorted(layers):
        raise InputError(f"{old / 'conductances.npz'}: layers {sorted(G)}, the config builds {layers}")
    n_features = (G[layers[0]].shape[1] - len(cfg.analog.bias_levels)) // 2
    model = model_from_config(cfg, n_features, G[layers[-1]].shape[0] // 2)
    model.set_conductances([G[name] for name in layers])
    model.epoch = int(summary.get("epoch", 0))
    model.save(new)
    return model


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.system.analog_block",
                                     description="Convert an analog model folder saved by an earlier release.")
    parser.add_argument("--migrate", nargs=2, metavar=("OLD_FOLDER", "NEW_FOLDER"), required=True)
    args = parser.parse_args()
    try:
        migrate_legacy_model(*args.migrate)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}")
    print(f"saved {args.migrate[1]} (model.json + arrays.npz)")
