"""Shared matplotlib helpers: the non-interactive Agg backend, PNG files written atomically."""

from __future__ import annotations

from pathlib import Path

from .atomic import atomic_write


def new_figure(nrows: int = 1, ncols: int = 1, figsize=(6.0, 4.0)):
    """``(figure, flat array of axes)`` on the Agg backend (no display needed); matplotlib imported lazily."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, constrained_layout=True)
    return fig, axes.ravel()


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (parent folders created), close it, return the path."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)
