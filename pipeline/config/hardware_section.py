"""The config's `hardware:` section: a device preset and field-by-field overrides, the
chips to program and read, frozen co-training and the chips in its loop."""
from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from .fields import F, Num, Section, _yaml_number


class HardwareConfig(Section):
    """Real devices (optional; without this section the block is ideal). Keys other
    than the ones below override the preset field by field, nested like the preset (e.g.
    ``device: {g_max: 2.5e-5}`` or ``variation: {is_sigma: 0.1}``) and are merged into
    ``overrides``; the preset and every override are checked by
    ``analog.hardware.resolve_hardware`` (docs/devices.md)."""
    model_config = ConfigDict(extra="allow")

    preset: str = F("ideal", "device preset: ideal, pcm, rram, ebana-4level, rram-2t2r, rram-2t2r-binary "
                             "(analog.hardware.PRESETS)",
                    min_length=1)
    overrides: dict[str, Any] = F({}, "preset fields to override, e.g. {device: {g_max: 2.5e-5}} "
                                      "(same as writing device: ... directly in this section)")
    seed: int | None = F(None, "seed of the programmed chip(s) (default: the config's seed)", ge=0)
    chips: int = F(1, "chips programmed from one trained block (independent realisations)", ge=1, le=1000)
    times: list[Annotated[Num, Field(ge=0)]] = F([0.0], "read times after programming, s")
    drift_compensation: bool | None = F(None, "global drift compensation by a calibration read "
                                              "(default: the preset's choice)")
    training: Literal["ideal", "aware", "in-situ"] = F(
        "ideal", "ideal EP, hardware-aware EP (noise injection) or in-situ EP (pulsed updates)")
    frozen: bool = F(False, "the analog block keeps its programmed state (no training on the chip)")
    loop_chip: int = F(0, "frozen co-training: the chip (0 .. hardware.chips - 1) in the loop of input "
                          "optimisation and through-analog retraining; one run per chip gives each chip its "
                          "own encoder", ge=0)
    loop_chips: list[int] | int | None = F(
        None, "frozen co-training through a population: the chips (a list of indices, or a count n: chips "
              "0 .. n-1) the encoder is retrained through, and the inputs optimised on, together, each step the "
              "mean of their gradients; "
              "the other chips (at least one) are held out, never seen by training (docs/design.md)")
    encoder_per_chip: bool = F(False, "frozen co-training: one encoder per chip, each retrained through its own "
                                      "chip, run as parallel Ray tasks, one nested run per chip")
    pulse_rule: Literal["pulses", "stochastic", "manhattan"] = F(
        "pulses", "in-situ EP: how an update becomes pulses (rounded count, stochastically rounded count, "
                  "or one pulse of the update's sign: the Manhattan rule); devices with few levels need "
                  "'stochastic' (docs/devices.md)")

    output_trim: int = F(0, "per-chip output trim (a tester's calibration): labelled validation images (the first n) "
                            "read through each chip to fit one offset per class added to its outputs before the "
                            "class decision (analog/hardware/trim.py); logged as the *_trimmed scenarios beside the "
                            "untrimmed ones; 0 = none", ge=0)
    finetune_epochs: int = F(0, "in-situ EP fine-tuning of every programmed chip right after `program` (the "
                                "finetune-chip stage; 0 = none): epochs of EP on the chip's realised circuit, "
                                "read with noise, updates as device pulses (hardware.pulse_rule)", ge=0)
    finetune_lr: Num | None = F(None, "learning rate of the in-situ fine-tuning (default: "
                                        "training.optimizer.lr)", gt=0)
    finetune_optimizer: Literal["sgd", "momentum", "adam"] | None = F(
        None, "base rule of the in-situ fine-tuning's pulses (default: training.optimizer.name); 'sgd' "
              "moves only devices with a real gradient, Adam moves every device every step, which drifts "
              "soft-bounds devices (experiments/README.md, frozen-chip recovery)")

    @model_validator(mode="wrap")
    @classmethod
    def _resolve(cls, data, handler):
        """The preset sections written directly under `hardware` join `overrides` before the
        fields are validated (one set of overrides, no extras left); then the checks."""
        if not isinstance(data, dict):
            return handler(data)
        fields = {k: v for k, v in data.items() if k in cls.model_fields}
        extra = {k: v for k, v in data.items() if k not in cls.model_fields}
        written = fields.get("overrides", {})
        merged, twice = None, None
        if isinstance(written, dict):   # else the field's own error is the one to report
            try:
                merged = _numbers(_merge(written, {k: v for k, v in extra.items() if isinstance(v, dict)}))
            except ValueError as exc:   # reported after the field and key checks, as before
                twice = exc
        self = handler(fields if merged is None else {**fields, "overrides": merged})
        for key, value in extra.items():
            if key in _PRESET_SECTIONS and not isinstance(value, dict):
                raise ValueError(f"hardware.{key}: {value!r:.60} has type {type(value).__name__}; expected a mapping "
                                 f"of preset fields, e.g. {key}: {{g_max: 2.5e-5}}")
            if not isinstance(value, dict):   # preset fields come in sections (device: {...})
                known = list(cls.model_fields) + list(_PRESET_SECTIONS)
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean 'hardware.{close[0]}'?)" if close else ""
                raise ValueError(f"hardware.{key}: unknown key{hint}; allowed keys here: {', '.join(known)} "
                                 f"({', '.join(_PRESET_SECTIONS)}: preset fields, as mappings)")
        if twice is not None:
            raise twice
        self._check_chips()
        from analog.hardware import resolve_hardware
        try:
            resolve_hardware(self.preset, preset_overrides(self))  # ValueError starting with the dotted key
        except ValueError as exc:
            raise ValueError(_name_the_overrides_key(str(exc), written, extra)) from None
        return self

    def _check_chips(self) -> None:
        if any(b <= a for a, b in zip(self.times, self.times[1:])):
            raise ValueError(f"hardware.times={list(self.times)}: must be strictly increasing (seconds after "
                             "programming, e.g. [0, 3600, 86400])")
        if self.loop_chip and not self.frozen:
            raise ValueError(f"hardware.loop_chip={self.loop_chip}: only a frozen co-training has a chip in the "
                             "loop; set hardware.frozen: true (or leave loop_chip out)")
        if self.loop_chip >= self.chips:
            raise ValueError(f"hardware.loop_chip={self.loop_chip}: must be below hardware.chips={self.chips} "
                             f"(chips are numbered from 0)")
        if self.frozen and "preset" not in self.model_fields_set:
            raise ValueError("hardware.frozen=true: needs hardware.preset (the devices the block is frozen on)")

    @model_validator(mode="after")
    def _population(self):
        """loop_chips: distinct chips in range, at least one held out; a count becomes the list."""
        if self.loop_chips is None:
            if self.encoder_per_chip and not self.frozen:
                raise ValueError("hardware.encoder_per_chip=true: only a frozen co-training has a chip in the "
                                 "loop; set hardware.frozen: true")
            return self
        given = self.loop_chips
        if not self.frozen:
            raise ValueError(f"hardware.loop_chips={given}: only a frozen co-training has chips in the loop; set "
                             "hardware.frozen: true (or leave loop_chips out)")
        clash = [k for k in ("loop_chip", "encoder_per_chip") if k in self.model_fields_set and getattr(self, k)]
        if clash:
            raise ValueError(f"hardware.loop_chips={given} and hardware.{clash[0]}={getattr(self, clash[0])}: "
                             "a population in the loop, or one chip per encoder; give one of them")
        chips = list(range(given)) if isinstance(given, int) else list(given)
        repeated = sorted({c for c in chips if chips.count(c) > 1})
        if not chips or repeated or min(chips) < 0:
            why = (f"chip {repeated[0]} given twice" if repeated else "empty; give chip indices or a count >= 1"
                   if not chips else f"chip {min(chips)} out of range, chips are numbered from 0")
            raise ValueError(f"hardware.loop_chips={given}: {why}")
        if max(chips) >= self.chips:
            raise ValueError(f"hardware.loop_chips={given}: chip {max(chips)} out of range, must be below "
                             f"hardware.chips={self.chips} (chips are numbered from 0)")
        if len(chips) == self.chips:
            raise ValueError(f"hardware.loop_chips={given}: leaves no held-out chip among hardware.chips="
                             f"{self.chips}; program more chips so some are never seen by training")
        return self.model_copy(update={"loop_chips": chips})   # a count becomes the list


#: preset sections a `hardware:` section may hold directly (analog.hardware.spec.SECTIONS)
_PRESET_SECTIONS = ("device", "variation", "dac", "adc", "wires")


def preset_overrides(hw: HardwareConfig) -> dict:
    """The preset fields a validated `hardware` section changes: `overrides` plus
    `drift_compensation` (a preset field given its own key), for resolve_hardware."""
    given = dict(hw.overrides)
    if hw.drift_compensation is not None:
        given["drift_compensation"] = hw.drift_compensation
    return given


def _name_the_overrides_key(message: str, overrides: dict, direct: dict) -> str:
    """resolve_hardware names a field `hardware.device.x` whichever place it was written
    in; when it was written only under `hardware.overrides`, say so."""
    key = message.split(":", 1)[0].split("=", 1)[0]
    if not key.startswith("hardware."):
        return message
    path = key.split(".")[1:]

    def has(tree, parts):
        for part in parts:
            if not isinstance(tree, dict) or part not in tree:
                return False
            tree = tree[part]
        return True
    if has(overrides, path) and not has(direct, path):
        return "hardware.overrides." + message[len("hardware."):]
    return message


def _merge(base: dict, extra: dict, where: str = "hardware") -> dict:
    """`hardware.overrides` and the preset sections written directly under `hardware` are
    one set of overrides: a field given in both places with different values is refused
    (silently preferring one would hide the other, e.g. a `--set` on the wrong spelling)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, f"{where}.{k}")
        elif k in out and out[k] != v:
            raise ValueError(f"{where}.{k}={v!r} and hardware.overrides.{where[len('hardware.'):]}"
                             f"{'.' if where != 'hardware' else ''}{k}={out[k]!r}: the same preset field "
                             f"given twice; set it in one place")
        else:
            out[k] = v
    return out


def _numbers(value):
    """Preset fields are free-form mappings, so YAML's 1e-7 (no dot, read as a string)
    becomes a number here as it does in the typed sections."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return _yaml_number(value) if isinstance(value, str) else value
