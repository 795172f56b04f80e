"""Writing report figures: every figure as PNG (for the page) and SVG (for print).

A module of its own, importing nothing of udlbench, so that the report and every study can use it
without import cycles (the report imports the experiment registry, which imports the studies).
"""

from __future__ import annotations

from pathlib import Path


def save_figure(figure, folder: str | Path, stem: str) -> str:
    """Write ``figure`` as ``folder/stem.png`` and ``folder/stem.svg``, close it, and return the
    PNG's file name ``"stem.png"`` (to link from an HTML page in ``folder``)."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".svg"):
        figure.savefig(folder / f"{stem}{suffix}", dpi=130, bbox_inches="tight")
    plt.close(figure)
    return f"{stem}.png"


__all__ = ["save_figure"]
