"""Experiment config → analog block (the `analog` and `training` sections)."""
from __future__ import annotations

from pipeline.config import RootConfig, config_dict
from pipeline.errors import InputError, SetupError

from analog.builders import build_network
from analog.model import AnalogModel
from analog.builders import make_device
from analog.optimizers import Schedule, get_optimizer


def model_from_config(cfg: RootConfig, n_features: int, n_classes: int, compile: bool = True) -> AnalogModel:
    a = cfg.analog
    d = a.diode.model_dump(by_alias=True)
    device = make_device(d.pop("model"), **d)
    layers = a.layers or [{"type": "dense", "units": u} for u in a.hidden]
    try:
        model = build_network(
            n_features, n_classes, layers, g_min=a.g_min, g_max=a.g_max, init=a.init,
            gain=a.gain, bias_levels=tuple(a.bias_levels), device=device, up_bias=a.diode.up_bias,
            down_bias=a.diode.down_bias, vref=a.vref, gmin=a.gmin, seed=cfg.seed, name=cfg.name)
    except ValueError as exc:
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
    """Compile `model` with the config's `training` section for `epochs` more epochs.

    A model that was already trained keeps its optimiser state (Adam's moments, the step
    count) when the config names the same optimiser; its learning rate and schedule come
    from the config, the schedule restarting at the model's current epoch.

    With a `hardware` section, `hardware.training` chooses how EP meets the devices:
    'ideal' (as without one), 'aware' (each mini-batch's EP solves see a fresh draw of the
    devices' programming error: analog.hardware.NoiseInjection) or 'in-situ' (each update
    becomes device pulses: analog.hardware.PulsedOptimizer around the configured optimiser;
    on a pair preset, hidden weights and pair states: analog.hardware.PairOptimizer)."""
    t = cfg.training
    o = t.optimizer
    schedule = Schedule(o.schedule, o.step_size, o.step_gamma, total_epochs=epochs, start_epoch=model.epoch)
    kwargs = {"momentum": o.momentum} if o.name == "momentum" else {}
    mode = "ideal" if cfg.hardware is None else cfg.hardware.training
    perturbation = None
    if mode == "ideal":
        optimizer = get_optimizer(o.name, lr=o.lr, schedule=schedule, **kwargs)
    else:
        from analog.hardware import NoiseInjection, PulsedOptimizer
        spec = hardware_spec(cfg)
        if mode == "aware":
            optimizer = get_optimizer(o.name, lr=o.lr, schedule=schedule, **kwargs)
            perturbation = NoiseInjection(spec)
        elif spec.device.pairs != "none":   # in-situ, off-chip: the block holds the intended pair states
            from analog.hardware import PairOptimizer, pair_maps
            optimizer = PairOptimizer(spec, pair_maps(model.circuit), lr=o.lr, base=o.name, schedule=schedule,
                                      write_errors=False, seed=chip_seed_base(cfg), **kwargs)
        else:
            optimizer = PulsedOptimizer(spec, lr=o.lr, base=o.name, schedule=schedule, rule=cfg.hardware.pulse_rule,
                                        seed=chip_seed_base(cfg), **kwargs)
    previous = model.optimizer if model.compiled else None
    if previous is not None and previous.name == optimizer.name:
        optimizer.state, optimizer.iterations = previous.state, previous.iterations
    if optimizer.name == "pairs" and not optimizer.state.get("hidden"):
        optimizer.start(model.dense_layers)          # the block holds pair states from its first solve
    loss_options = ({"temperature": t.temperature} if t.loss == "cross_entropy"
                    else {"midpoint": t.mse_midpoint, "amplitude": t.mse_amplitude})
    model.compile(loss=t.loss, optimizer=optimizer, beta=t.beta, nudging=t.nudging, engine=t.engine,
                  engine_options={"processes": t.workers} if t.engine == "ngspice" else None,
                  perturbation=perturbation, gradient=t.gradient, algorithm=t.algorithm,
                  cep_steps=t.cep_steps, **loss_options)
    model.config = config_dict(cfg)
    return model


def optimizer_for(cfg: RootConfig, chip):
    """The pulsed optimiser of one chip: hardware.finetune_optimizer (default: the configured
    optimiser) as base rule, the chip's
    devices, hardware.pulse_rule, seeded by the chip's seed, schedule over the fine-tuning."""
    from analog.hardware import PulsedOptimizer
    from analog.optimizers import Schedule
    o, hw = cfg.training.optimizer, cfg.hardware
    schedule = Schedule(o.schedule, o.step_size, o.step_gamma, total_epochs=hw.finetune_epochs)
    base = hw.finetune_optimizer or o.name
    lr = hw.finetune_lr or o.lr
    kwargs = {"momentum": o.momentum} if base == "momentum" else {}
    if chip.spec.device.pairs != "none":     # ternary/binary pairs: hidden weights, writes with bit errors
        from analog.hardware import PairOptimizer, pair_maps
        return PairOptimizer(chip.spec, pair_maps(chip.circuit), lr=lr, base=base, seed=chip.seed,
                             schedule=schedule, **kwargs)
    return PulsedOptimizer(chip.spec, lr=lr, base=base, rule=hw.pulse_rule, seed=chip.seed, schedule=schedule,
                           **kwargs)


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
