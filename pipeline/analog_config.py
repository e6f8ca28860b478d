"""Experiment config → analog block (the `analog` and `training` sections)."""
from __future__ import annotations

from analog.model import AnalogModel, build_dense_network, make_device
from analog.optimizers import Schedule, get_optimizer


def model_from_config(cfg: dict, n_features: int, n_classes: int, compile: bool = True) -> AnalogModel:
    a, t = cfg["analog"], cfg["training"]
    d = dict(a["diode"])
    device = make_device(d.pop("model"), **d)
    model = build_dense_network(
        n_features, n_classes, hidden=tuple(a["hidden"]), g_min=a["g_min"], g_max=a["g_max"], init=a["init"],
        gain=a["gain"], bias_levels=tuple(a["bias_levels"]), device=device, up_bias=d["up_bias"],
        down_bias=d["down_bias"], vref=a["vref"], gmin=a["gmin"], seed=cfg.get("seed", 0), name=cfg["name"])
    model.config = cfg
    if compile:
        compile_from_config(model, cfg, t["epochs"])
    return model


def compile_from_config(model: AnalogModel, cfg: dict, epochs: int) -> AnalogModel:
    """Compile `model` with the config's `training` section for `epochs` more epochs.

    A model that was already trained keeps its optimiser state (Adam's moments, the step
    count) when the config names the same optimiser; its learning rate and schedule come
    from the config, the schedule restarting at the model's current epoch."""
    t = cfg["training"]
    o = t["optimizer"]
    schedule = Schedule(o["schedule"], o["step_size"], o["step_gamma"], total_epochs=epochs,
                        start_epoch=model.epoch)
    kwargs = {"momentum": o["momentum"]} if o["name"] == "momentum" else {}
    optimizer = get_optimizer(o["name"], lr=o["lr"], schedule=schedule, **kwargs)
    previous = getattr(model, "optimizer", None) if model.compiled else None
    if previous is not None and previous.name == optimizer.name:
        optimizer.state, optimizer.iterations = previous.state, previous.iterations
    loss_options = ({"temperature": t["temperature"]} if t["loss"] == "cross_entropy"
                    else {"midpoint": t["mse_midpoint"], "amplitude": t["mse_amplitude"]})
    model.compile(loss=t["loss"], optimizer=optimizer, beta=t["beta"], nudging=t["nudging"], engine=t["engine"],
                  engine_options={"processes": t["workers"]} if t["engine"] == "ngspice" else None,
                  **loss_options)
    model.config = cfg
    return model
