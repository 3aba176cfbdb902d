"""PNG plots: a speedup heat map of the attention grid and bars for the TransformerLM rows (needs matplotlib)."""

import os

from .report import speedup


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_all(rows, contenders, out_dir) -> list[str]:
    """Returns the files written; none when matplotlib is missing."""
    if not available():
        return []
    import matplotlib

    matplotlib.use("Agg")  # no display on benchmark machines
    written = []
    for suite in ("attention", "sdpa"):
        path = _heatmap(rows, contenders, suite, os.path.join(out_dir, f"{suite}_speedup.png"))
        if path:
            written.append(path)
    for size in sorted({r["size"] for r in rows if r["suite"] == "transformer"}):
        path = _bars(rows, size, os.path.join(out_dir, f"transformer_{size}.png"))
        if path:
            written.append(path)
    return written


def _heatmap(rows, contenders, suite, path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    cells = [r for r in rows if r["suite"] == suite]
    compiled = [c.name for c in contenders if c.compiled]
    if not cells or not compiled:
        return None
    dims = sorted({r["D"] for r in cells})
    seqs = sorted({r["S"] for r in cells})
    base = {(r["D"], r["S"]): r for r in cells if r["contender"] == "eager"}
    fig, axes = plt.subplots(len(compiled), 2, figsize=(2.2 * len(seqs) + 3, 1.6 * len(dims) * len(compiled) + 1),
                             squeeze=False)
    for i, name in enumerate(compiled):
        mine = {(r["D"], r["S"]): r for r in cells if r["contender"] == name}
        for j, prefix in enumerate(("fwd", "bwd")):
            grid = [[speedup(mine.get((d, s), {}), base.get((d, s)), prefix) for s in seqs] for d in dims]
            values = [[v if v is not None else float("nan") for v in line] for line in grid]
            ax = axes[i][j]
            # Log scale centred on 1x: red is slower than eager, green faster; 2x and 0.5x equally strong.
            im = ax.imshow(values, cmap="RdYlGn", norm=LogNorm(vmin=0.5, vmax=2.0), aspect="auto")
            ax.set_xticks(range(len(seqs)), [str(s) for s in seqs])
            ax.set_yticks(range(len(dims)), [str(d) for d in dims])
            ax.set_xlabel("seq_len")
            ax.set_ylabel("d_head" if suite == "sdpa" else "d_model")
            ax.set_title(f"{name} {'forward' if prefix == 'fwd' else 'backward'} speedup vs eager")
            for y, line in enumerate(grid):
                for x, v in enumerate(line):
                    ax.text(x, y, "fail" if v is None else f"{v:.2f}x", ha="center", va="center", fontsize=8)
            fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _bars(rows, size, path):
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r["suite"] == "transformer" and r["size"] == size]
    if not mine:
        return None
    labels = [r["contender"] if r["version"] == "eager" else f"{r['contender']}\n{r['version']}" for r in mine]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(mine)), 4))
    width = 0.4
    for k, (prefix, title) in enumerate((("fwd", "forward only"), ("step", "fwd+bwd+AdamW"))):
        values = [r.get(f"{prefix}_median_ms") or 0.0 for r in mine]
        xs = [i + (k - 0.5) * width for i in range(len(mine))]
        ax.bar(xs, values, width, label=title)
    ax.set_xticks(range(len(mine)), labels, fontsize=8)
    ax.set_ylabel("median ms (lower is better)")
    ax.set_title(f"TransformerLM {size} (missing bar: failed or not applicable)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
