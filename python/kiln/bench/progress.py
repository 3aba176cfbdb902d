"""A progress bar over the run's tasks: tqdm when installed, else one plain line per task."""

import contextlib
import sys
import time


class Progress:
    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                # stderr, so the tables on stdout stay clean when redirected.
                self.bar = tqdm(total=total, file=sys.stderr, unit="task", dynamic_ncols=True)
            except ImportError:
                pass

    @contextlib.contextmanager
    def task(self, label: str, weight: int = 1):
        """One unit of work; `weight` is its expected share of the run (see budget.WEIGHT)."""
        if self.bar is not None:
            self.bar.set_description(label[:60])
        elif self.enabled:
            elapsed = time.perf_counter() - self.t0
            print(f"[{self.done + 1}/{self.total} {elapsed:6.0f}s] {label}", file=sys.stderr, flush=True)
        try:
            yield
        finally:
            self.done += weight
            if self.bar is not None:
                self.bar.update(weight)

    def write(self, text: str):
        """Print without breaking the bar."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
