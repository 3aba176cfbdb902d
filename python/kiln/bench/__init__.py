"""kiln's benchmark harness (shared/benchmarks.md): `python -m kiln.bench`, or `run(argv)` from Python."""


def run(argv=None) -> list[dict]:
    """Run the benchmarks with command-line arguments `argv`; returns every result row as a dict."""
    # Imported here so that `import kiln.bench` stays cheap and never imports a backend.
    from .cli import run as _run

    return _run(argv)


__all__ = ["run"]
