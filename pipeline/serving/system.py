"""The trained mixed-signal system as one classifier: images → encoder → volts → analog block
(the ideal block, or a programmed chip read at a time after programming) → class and scores.

Every part is loaded by the project's own loaders (`digital.load_encoder`,
`pipeline.flow.artifacts.load_analog`, `pipeline.hardware.chip_files.load_chips`) from plain files:
no pickle. A system's folder (what the MLflow model holds as artifacts):

  system.json     format, class names, how pixels reach the block, chips and read times
  encoder/        the encoder (absent when the block takes the pixels as volts)
  analog_model/   the trained block (model.json + arrays.npz)
  chips/          chip<i>/ folders of the programmed chips (only for runs with chips)

Scores are the block's differential output voltages, one per class; the class is the
largest. A sample the solver does not converge on gets class -1 and NaN scores (the rule by
which the stages count it wrong).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.serving.images import ServingInputError, to_pixels

SYSTEM_FILE = "system.json"
FORMAT, VERSION = "mixsig-system", 1
PARTS = {"encoder": "encoder", "analog": "analog_model", "chips": "chips"}   # part → folder
ENGINES = ("native", "ngspice")
NOT_CONVERGED = -1


def read_spec(path) -> dict:
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ServingInputError(f"{path}: not a readable {SYSTEM_FILE} ({exc})") from None
    if spec.get("format") != FORMAT:
        raise ServingInputError(f"{path}: format {spec.get('format')!r}, expected {FORMAT!r}")
    return spec


class MixedSignalSystem:
    """Encoder (or the pixel-to-volt rule), trained analog block and its programmed chips."""

    def __init__(self, spec: dict, analog, encoder=None, chips=()):
        self.spec, self.analog, self.encoder, self.chips = spec, analog, encoder, list(chips)
        self.classes = list(spec["classes"])

    @classmethod
    def load(cls, spec: dict, analog_dir, encoder_dir=None, chips_dir=None) -> "MixedSignalSystem":
        from pipeline.flow.artifacts import load_analog
        encoder = chips = None
        if spec["input"] == "encoder":
            if encoder_dir is None:
                raise ServingInputError("the system takes its images through an encoder, but none was given")
            from digital import load_encoder
            # the one plug-in module the run's config named; the file alone imports nothing
            encoder = load_encoder(encoder_dir, modules=tuple(spec.get("encoder_modules", ())))
        analog = load_analog(Path(analog_dir))
        if chips_dir is not None:
            from pipeline.hardware.chip_files import load_chips
            chips = load_chips(Path(chips_dir))
        return cls(spec, analog, encoder, chips or ())

    @classmethod
    def from_folder(cls, folder) -> "MixedSignalSystem":
        """A system's folder (layout in the module docstring)."""
        folder = Path(folder)
        parts = {k: folder / d for k, d in PARTS.items() if (folder / d).exists()}
        return cls.load(read_spec(folder / SYSTEM_FILE), parts.get("analog", folder / PARTS["analog"]),
                        parts.get("encoder"), parts.get("chips"))

    # ---- requests -------------------------------------------------------------------------
    def check_request(self, chip: int | None, t: float | None, engine: str) -> None:
        """A chip that exists, a read time after programming, a known engine."""
        if engine not in ENGINES:
            raise ServingInputError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
        where = f" of run {self.spec['source_run']}" if self.spec.get("source_run") else ""
        if chip is None:
            if t is not None:
                raise ServingInputError("a read time (--time / time) needs a chip (--chip / chip): the ideal "
                                        "block does not drift")
            return
        if not self.chips:
            raise ServingInputError(f"chip {chip}: the system{where} has no programmed chips (its config has no "
                                    f"hardware section)")
        if not 0 <= chip < len(self.chips):
            raise ServingInputError(f"chip {chip}: the system{where} has {len(self.chips)} chip(s), numbered "
                                    f"0..{len(self.chips) - 1}")
        if t is not None and (not np.isfinite(t) or t < 0):
            raise ServingInputError(f"time {t:g} s: before programming; read times are seconds after "
                                    f"programming (>= 0)")

    def volts(self, pixels: np.ndarray) -> np.ndarray:
        """Block inputs of uint8 images: the encoder's embedding, or the pixels as volts."""
        if self.encoder is not None:
            return np.asarray(self.encoder.embed(pixels), float)
        from pipeline.flow.stage_data import pixel_volts
        return pixel_volts(pixels, self.spec["digital"]["v_low"], self.spec["digital"]["v_high"])

    def _block_outputs(self, x: np.ndarray, chip: int | None, t: float, engine: str, rng) -> np.ndarray:
        if chip is None:
            return self.analog.predict(x, batch_size=len(x), engine=engine)
        c = self.chips[chip]
        sol = c.solve(x, t, engine=engine, rng=rng)
        out = np.array(c.circuit.outputs(sol.v), float)
        ok = np.asarray(sol.converged, bool) & np.all(np.isfinite(out), axis=1)
        out[~ok] = np.nan
        return out

    def scores(self, images, chip: int | None = None, t: float | None = None, engine: str = "native",
               batch_size: int = 256, on_batch=None) -> np.ndarray:
        """(N, classes) output voltages; NaN rows did not converge. A chip is read once per
        batch, its read noise drawn from a generator seeded by the chip (same call, same
        answer); `on_batch(n)` is told each batch's size."""
        self.check_request(chip, t, engine)
        pixels = to_pixels(images)
        rng = None if chip is None else np.random.default_rng(self.chips[chip].seed)
        out = []
        for lo in range(0, len(pixels), batch_size):
            x = self.volts(pixels[lo: lo + batch_size])
            out.append(self._block_outputs(x, chip, 0.0 if t is None else float(t), engine, rng))
            if on_batch is not None:
                on_batch(len(x))
        return np.concatenate(out)

    def classify(self, images, chip: int | None = None, t: float | None = None, engine: str = "native",
                 batch_size: int = 256, on_batch=None):
        """A DataFrame: class, class_name, score_0 … score_{K-1} (volts), one row per image."""
        import pandas as pd
        s = self.scores(images, chip, t, engine, batch_size, on_batch)
        ok = np.all(np.isfinite(s), axis=1)
        cls = np.where(ok, np.where(ok[:, None], s, 0.0).argmax(1), NOT_CONVERGED).astype(np.int64)
        frame = pd.DataFrame({"class": cls,
                              "class_name": [self.classes[c] if c >= 0 else "not converged" for c in cls]})
        for k in range(s.shape[1]):
            frame[f"score_{k}"] = s[:, k]
        return frame

    def close(self) -> None:
        self.analog.close()
        for chip in self.chips:
            chip.close()


def request_of_params(params: dict | None) -> tuple[int | None, float | None, str]:
    """(chip, time, engine) of the MLflow model's params: chip -1 is the ideal block, and a
    time of 0 s with it means no time was asked for."""
    p = params or {}
    chip, t, engine = int(p.get("chip", -1)), float(p.get("time", 0.0)), str(p.get("engine", "native"))
    if chip < 0:
        return None, (None if t == 0.0 else t), engine
    return chip, t, engine
