"""Hyper-parameter and hardware sweeps on Ray Tune (`mixsig sweep`).

  space    the space file: dimensions over dotted config keys, searcher, samples, metric,
           scheduler (early stopping), stages, seeds; checked against the config schema
  trial    one trial in a Ray worker: a co-training or a list of stages, nested MLflow runs,
           the analog block's per-epoch metrics reported to Tune
  driver   Ray (embedded or a cluster by address), the sweep's MLflow run, the Tuner,
           resume, the results table and the best config

Ray is imported by the driver and the trials only; nothing in analog/ or the stages knows
of it (the trial listens to the stages' metrics through pipeline.flow.runner.METRIC_LISTENERS).
"""
