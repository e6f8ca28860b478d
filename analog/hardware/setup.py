"""How EP training meets a chip's devices, described by a typed spec (`HardwareTrainingSpec`)
and turned into the optimiser and perturbation `analog.training_setup.compile_model` takes."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpecError
from ..optimizers import Schedule
from ..specs import OptimizerSpec, TrainingSpec
from ..training_setup import make_optimizer, momentum_option
from .spec import HardwareSpec

__all__ = ["HardwareTrainingSpec", "training_rule", "chip_optimizer"]

MODES = ("ideal", "aware", "in-situ")
PULSE_RULES = ("pulses", "stochastic", "manhattan")


@dataclass(frozen=True)
class HardwareTrainingSpec:
    """The devices (`hardware`), how EP meets them (mode: 'ideal' as without devices;
    'aware': each mini-batch's solves see a fresh draw of their programming error; 'in-situ':
    each update becomes device pulses, on a pair preset hidden weights and pair states), how
    an update becomes pulses (pulse_rule) and the seed of the pulsed writes."""
    hardware: HardwareSpec
    mode: str = "ideal"
    pulse_rule: str = "pulses"
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.hardware, HardwareSpec):
            raise SpecError(f"HardwareTrainingSpec.hardware={self.hardware!r}: must be an analog.hardware.HardwareSpec")
        for name, choices in (("mode", MODES), ("pulse_rule", PULSE_RULES)):
            if getattr(self, name) not in choices:
                raise SpecError(f"HardwareTrainingSpec.{name}={getattr(self, name)!r}: must be one of "
                                f"{', '.join(map(repr, choices))}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SpecError(f"HardwareTrainingSpec.seed={self.seed!r}: must be an integer >= 0")


def training_rule(t: TrainingSpec, hw: HardwareTrainingSpec, circuit, start_epoch: int = 0) -> dict:
    """{'optimizer': ..., 'perturbation': ...} for compile_model: t's optimiser with hw.mode's
    noise injection, or wrapped in pulsed device updates (pairs: hidden weights, written
    without bit errors off-chip)."""
    from .latent import PairOptimizer
    from .pairs import pair_maps
    from .training import NoiseInjection, PulsedOptimizer
    o, spec = t.optimizer, hw.hardware
    if hw.mode == "ideal":
        return {"optimizer": make_optimizer(o, t.epochs, start_epoch), "perturbation": None}
    if hw.mode == "aware":
        return {"optimizer": make_optimizer(o, t.epochs, start_epoch), "perturbation": NoiseInjection(spec)}
    schedule = Schedule(o.schedule, o.step_size, o.step_gamma, total_epochs=t.epochs, start_epoch=start_epoch)
    if spec.device.pairs != "none":   # off-chip: the block holds the intended pair states
        opt = PairOptimizer(spec, pair_maps(circuit), lr=o.lr, base=o.name, schedule=schedule, write_errors=False,
                            seed=hw.seed, **momentum_option(o, o.name))
    else:
        opt = PulsedOptimizer(spec, lr=o.lr, base=o.name, schedule=schedule, rule=hw.pulse_rule, seed=hw.seed,
                              **momentum_option(o, o.name))
    return {"optimizer": opt, "perturbation": None}


def chip_optimizer(o: OptimizerSpec, epochs: int, chip, pulse_rule: str = "pulses"):
    """The pulsed optimiser of one programmed chip (its devices, seeded by its seed): base
    rule and rate from `o`, schedule over `epochs`; on pairs hidden weights written with bit errors."""
    from .latent import PairOptimizer
    from .pairs import pair_maps
    from .training import PulsedOptimizer
    schedule = Schedule(o.schedule, o.step_size, o.step_gamma, total_epochs=epochs)
    if chip.spec.device.pairs != "none":
        return PairOptimizer(chip.spec, pair_maps(chip.circuit), lr=o.lr, base=o.name, seed=chip.seed,
                             schedule=schedule, **momentum_option(o, o.name))
    return PulsedOptimizer(chip.spec, lr=o.lr, base=o.name, rule=pulse_rule, seed=chip.seed, schedule=schedule,
                           **momentum_option(o, o.name))
