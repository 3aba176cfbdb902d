"""Keeps --quick under its wall-time budget: a run that falls behind times its later cells shorter."""

import time

# Task weights, roughly each kind of task's share of a quick run on a quiet machine.
WEIGHT = {"warm-up": 4, "cell": 1, "memory": 2, "model": 6}
SHORT_SECONDS = 0.5
MIN_DONE = 12  # weight of measured tasks to see before projecting


def check(settings, progress):
    """Before a task: if the run is projected past settings.budget_s, shorten the rest and say so.

    The rate comes from the tasks since the first check (after the one-time process warm-ups,
    which say nothing about the cells).
    """
    if settings.budget_s is None or settings.shortened:
        return
    now = time.perf_counter()
    if settings.budget_origin is None:
        settings.budget_origin = (now, progress.done)
        return
    t0, done0 = settings.budget_origin
    if progress.done - done0 < MIN_DONE:
        return
    rate = (now - t0) / (progress.done - done0)
    elapsed = now - progress.t0
    projected = elapsed + rate * (progress.total - progress.done)
    if projected <= settings.budget_s:
        return
    settings.shortened = True
    settings.min_seconds = min(settings.min_seconds, SHORT_SECONDS)
    settings.memory, settings.memory_transformer = "none", False
    settings.notes.append(
        f"behind the {settings.budget_s:.0f} s budget of --quick after {elapsed:.0f} s "
        f"(projected {projected:.0f} s): later cells were timed for >= {settings.min_iters} iterations / "
        f"{settings.min_seconds:g} s, and their peak memory was not measured")
    progress.write(settings.notes[-1])
