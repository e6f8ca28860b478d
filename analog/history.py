"""What `AnalogModel.fit` reports: the per-epoch history and the callback hooks."""
from __future__ import annotations

from dataclasses import dataclass, field


class Callback:
    """Hooks called by `AnalogModel.fit` (override what you need)."""

    def on_train_begin(self, model): ...
    def on_epoch_end(self, epoch: int, logs: dict, model): ...
    def on_train_end(self, model): ...


@dataclass
class History:
    history: dict = field(default_factory=dict)      # metric name → list per epoch
    histograms: list = field(default_factory=list)   # per epoch: {name: (counts, edges)}
    epoch: list = field(default_factory=list)

    def append(self, epoch: int, logs: dict, hist: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        self.histograms.append(hist)
