"""Real devices for the analog block: device specifications and presets, programming a
trained block onto a chip (programming error, levels, stuck faults, drift, read noise,
diode and amplifier variation, ternary/binary pairs with bit errors), and training on such
devices (noise injection, pulsed updates, hidden weights of pairs). Knows nothing of Keras or MLflow. Formulas and sources: docs/devices.md."""
from .chip import Chip, program
from .insitu import finetune
from .latent import PairOptimizer, pair_states
from .pairs import PairMap, pair_maps
from .population import ChipPopulation
from .presets import PRESETS, resolve_hardware
from .spec import DeviceSpec, HardwareSpec, VariationSpec, check_read_time, validate
from .training import NoiseInjection, PulsedOptimizer
from .trim import fit_output_offsets, read_grid, trimmed_accuracy_grid
from .setup import HardwareTrainingSpec, chip_optimizer, training_rule

__all__ = ["fit_output_offsets", "read_grid", "trimmed_accuracy_grid", "Chip", "ChipPopulation", "DeviceSpec", "HardwareSpec", "HardwareTrainingSpec", "NoiseInjection", "PRESETS", "PairMap",
           "PairOptimizer", "PulsedOptimizer", "VariationSpec", "check_read_time", "finetune", "pair_maps",
           "pair_states", "program", "resolve_hardware", "validate", "chip_optimizer", "training_rule"]
