"""Ray Tune's side of a sweep: the search algorithm and scheduler from the space, the
trainable, the run config and the progress bar over trials."""
from __future__ import annotations

from pipeline.sweep.space import SweepSpace

# --------------------------------------------------------------------------------------- Tune
def tune_config(space: SweepSpace, settings: dict, seed: int):
    from ray import tune
    search_alg, scheduler = None, None
    if space.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch
        search_alg = OptunaSearch(metric=space.metric, mode=space.mode, seed=seed)
        if space.seeds:
            from ray.tune.search import Repeater
            search_alg = Repeater(search_alg, repeat=len(space.seeds), set_index=True)
    elif space.searcher == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator
        search_alg = BasicVariantGenerator(random_state=seed)
    sched, kind = space.scheduler, space.scheduler.type
    if kind == "asha":
        from ray.tune.schedulers import ASHAScheduler
        # time axis: Tune's own report count, present in every result (= the analog epoch until the last report)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=settings["max_epochs"] + 2,
                                  grace_period=sched.setting("grace_period"),
                                  reduction_factor=sched.setting("reduction_factor"))
    elif kind == "median":
        from ray.tune.schedulers import MedianStoppingRule
        # min_time_slice: never PAUSE a trial to yield to pending ones (the rule's default when it has
        # too few others to compare with): a trial has no checkpoint, so a paused one starts again
        scheduler = MedianStoppingRule(time_attr="training_iteration", grace_period=sched.setting("grace_period"),
                                       min_samples_required=sched.setting("min_samples_required"),
                                       min_time_slice=10 ** 9)
    return tune.TuneConfig(metric=space.metric, mode=space.mode, search_alg=search_alg, scheduler=scheduler,
                           num_samples=space.samples * (len(space.seeds) if space.seeds and
                                                        space.searcher == "optuna" else 1),
                           max_concurrent_trials=settings["concurrency"])


def trainable(setup: dict, cpus: float):
    from ray import tune

    from pipeline.sweep.trial import make_trainable
    return tune.with_resources(make_trainable(setup), {"cpu": cpus})


def _progress_callback(total: int, metric: str, mode: str):
    """A Tune callback: one progress bar over the trials (Tune's own tables stay off), the
    best value so far and each trial's end."""
    from ray import tune

    from analog.progress import progress

    class Progress(tune.Callback):
        def __init__(self):
            self.bar, self.best, self.ended = None, None, set()

        def setup(self, **info):
            self.bar = progress(total, "trials", "trial", every=None)   # off a terminal: a line per trial

        def _end(self, trial, how: str):
            if trial.trial_id in self.ended:
                return
            self.ended.add(trial.trial_id)
            value = (trial.last_result or {}).get(metric)
            if isinstance(value, (int, float)) and (self.best is None or (value > self.best) == (mode == "max")):
                self.best = value
            self.bar.update(1)
            if self.best is not None:
                self.bar.set_postfix_str(f"best {metric} {self.best:.4f}")
            shown = f" {metric} {value:.4f}" if isinstance(value, (int, float)) else ""
            self.bar.write(f"trial {trial.trial_id} {how}{shown}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            done = (trial.last_result or {}).get("trial_done")
            self._end(trial, "finished" if done else "stopped early")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, "failed")

        def on_experiment_end(self, trials, **info):
            if self.bar is not None:
                self.bar.close()

    return Progress()


def run_config(sweep_id: str, storage: str, verbose: int, total: int = 0, metric: str = "", mode: str = "max"):
    from ray import tune
    callbacks = [_progress_callback(total, metric, mode)] if verbose == 1 else []
    return tune.RunConfig(name=sweep_id, storage_path=storage, verbose=0 if verbose < 2 else 1,
                          failure_config=tune.FailureConfig(max_failures=0), callbacks=callbacks)
