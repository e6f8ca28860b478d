"""The analog block: resistive circuits built from layers, simulated natively or by ngspice,
trained by Equilibrium Propagation. Knows nothing of Keras or MLflow.

    import analog
    x = analog.InputVoltage(4)
    b = analog.BiasVoltage([1.0, -1.0])
    h = analog.Dense(10)(analog.Concatenate()([x, b]))
    h = analog.DiodeLayer("down", 0.3)(analog.DiodeLayer("up", -0.3)(h))
    h = analog.Amplification(4.0)(h)
    y = analog.CurrentLayer()(analog.Dense(6)(analog.Concatenate()([h, b])))
    model = analog.AnalogModel(x, y).compile(loss="mse", optimizer="adam", beta=1e-7)
    model.fit(x_train, y_train, epochs=5)

Importing this package is light: the ngspice engine (PySpice, a worker pool) and the
hardware models load on first use of their names (`analog.NgspiceEngine`,
`analog.program`, ...).
"""
from __future__ import annotations

import importlib

from . import devices, losses, optimizers
from .block import Block
from .devices import Device, IdealDiode, MOSDiode, ShockleyDiode
from .ep import GradientResult, ep_gradients, exact_gradients
from .layers import (Amplification, BiasVoltage, Concatenate, CurrentLayer, Dense, DiodeLayer, InputVoltage,
                     Nodes)
from .local import LocallyConnected2D, Rearrange, pixel_nodes
from .losses import MSE, CrossEntropy, Loss, Margin
from .builders import BLOCK_DEFAULTS, block_defaults, build_dense_network, build_network, make_device
from .specs import BlockSpec, DenseLayerSpec, DiodeSpec, LocalLayerSpec, OptimizerSpec, SpecError, TrainingSpec
from .training_setup import compile_model
from .history import Callback, History
from .model import AnalogModel
from .native import NativeEngine, total_energy
from .optimizers import SGD, Adam, Momentum, Optimizer, Schedule
from .solution import ConvergenceError, Solution
from .verify import gradient_report

# name → module that defines it, imported on first access
_LAZY = {
    "NgspiceEngine": "analog.ngspice",
    "Engine": "analog.engine",
    "Chip": "analog.hardware", "DeviceSpec": "analog.hardware", "HardwareSpec": "analog.hardware",
    "VariationSpec": "analog.hardware", "NoiseInjection": "analog.hardware", "PulsedOptimizer": "analog.hardware",
    "PRESETS": "analog.hardware", "program": "analog.hardware", "resolve_hardware": "analog.hardware",
    "hardware": None,
}

__all__ = [
    # layers
    "InputVoltage", "BiasVoltage", "Dense", "DiodeLayer", "Amplification", "CurrentLayer", "Concatenate", "Nodes",
    "LocallyConnected2D", "Rearrange", "pixel_nodes",
    # model
    "AnalogModel", "Block", "Callback", "History", "build_dense_network", "make_device", "BLOCK_DEFAULTS", "block_defaults",
    # typed specs and the builders that take them
    "BlockSpec", "DenseLayerSpec", "LocalLayerSpec", "DiodeSpec", "TrainingSpec", "OptimizerSpec", "SpecError",
    "build_network", "compile_model",
    # devices
    "devices", "Device", "ShockleyDiode", "IdealDiode", "MOSDiode",
    # engines and solutions
    "NativeEngine", "NgspiceEngine", "Engine", "total_energy", "Solution", "ConvergenceError",
    # Equilibrium Propagation and checks
    "ep_gradients", "exact_gradients", "GradientResult", "gradient_report",
    # training
    "losses", "Loss", "MSE", "CrossEntropy", "Margin", "optimizers", "Optimizer", "SGD", "Momentum", "Adam", "Schedule",
    # hardware (real devices, chips)
    "hardware", "Chip", "DeviceSpec", "HardwareSpec", "VariationSpec", "NoiseInjection", "PulsedOptimizer",
    "PRESETS", "program", "resolve_hardware",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'analog' has no attribute {name!r}")
    value = importlib.import_module(_LAZY[name] or f"analog.{name}")
    if _LAZY[name]:
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
