"""One chart style for the whole project, and saving charts where the docs expect them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = "colorblind"


def use_style() -> None:
    """Apply the project style (seaborn whitegrid, readable sizes, fixed DPI for stable PNGs)."""
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook")
    plt.rcParams.update(
        {
            "figure.figsize": (10, 4.5),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "savefig.bbox": "tight",
            "axes.titlesize": 12,
            "axes.titleweight": "bold",
            "svg.hashsalt": "opslab",
        }
    )


def save(fig: plt.Figure, out_dir: str | Path, name: str) -> Path:
    """Save a titled figure as PNG under out_dir (no timestamps in metadata, so reruns are byte-stable)."""
    if not (fig._suptitle or any(ax.get_title() for ax in fig.axes)):
        raise ValueError(f"chart {name!r} has no title: say what it shows and on which data")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, metadata={"Software": None})
    return path
