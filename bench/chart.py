"""Draw BENCHMARKS.md's PNG charts from the specs in the result records (matplotlib, Agg
backend); the spec kinds are listed in :mod:`bench.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict


def draw_chart(spec: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kind = spec.get("kind", "bar")
    if kind == "scatter":
        panels = spec["panels"]
        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            sc = ax.scatter(panel["x"], panel["y"], c=panel["c"], cmap="tab10", s=4, alpha=0.7,
                            vmin=-0.5, vmax=9.5, linewidths=0)
            ax.set_title(panel.get("title", ""), fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        cbar = fig.colorbar(sc, ax=list(axes[0]), ticks=range(10), fraction=0.03)
        cbar.set_label(spec.get("clabel", "label"))
        fig.suptitle(spec.get("title", ""), fontsize=11)
    else:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        series = spec.get("series", {})
        if kind == "bar":
            cats = [str(c) for c in spec["categories"]]
            x = np.arange(len(cats))
            width = 0.8 / max(1, len(series))
            for i, (label, values) in enumerate(series.items()):
                vals = [np.nan if v is None else v for v in values]
                ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=label)
            ax.set_xticks(x)
            ax.set_xticklabels(cats, rotation=0 if len(cats) < 7 else 30, fontsize=9)
            if spec.get("log"):
                ax.set_yscale("log")
        else:
            for label, values in series.items():
                xs = spec["x"] if not isinstance(values, dict) else values["x"]
                ys = values if not isinstance(values, dict) else values["y"]
                ax.plot(xs, [np.nan if v is None else v for v in ys], marker="o", label=label)
            if spec.get("logx"):
                ax.set_xscale("log")
            if spec.get("logy"):
                ax.set_yscale("log")
            ax.set_xlabel(spec.get("xlabel", ""))
        for y in spec.get("hlines", []):
            ax.axhline(y["y"], color=y.get("color", "grey"), linestyle="--", linewidth=1,
                       label=y.get("label"))
        ax.set_ylabel(spec.get("ylabel", ""))
        ax.set_title(spec.get("title", ""), fontsize=11)
        ax.grid(axis="y", alpha=0.3)
        if series:
            ax.legend(fontsize=8)
    if kind != "scatter":          # the shared colorbar does not fit tight_layout
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
