"""Reading a logged metric back from the tracking store, step by step (for plots and
tables of runs already finished, as `mixsig compare` draws them)."""
from __future__ import annotations


def by_step(client, run_id: str, key: str) -> dict:
    """{step: the latest value logged at that step} of a metric, in step order."""
    out: dict = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        out[m.step] = m.value
    return dict(sorted(out.items()))


def series(client, run_id: str, key: str) -> list[float]:
    """A metric's values by step (the latest value logged at each step), in step order."""
    return list(by_step(client, run_id, key).values())
