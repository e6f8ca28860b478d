"""Reading a logged metric back from the tracking store, step by step (for plots and
tables of runs already finished)."""
from __future__ import annotations


def series(client, run_id: str, key: str) -> list[float]:
    """A metric's values by step (the latest value logged at each step), in step order."""
    by_step: dict = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        by_step[m.step] = m.value
    return [by_step[k] for k in sorted(by_step)]
