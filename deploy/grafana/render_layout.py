"""Draw the dashboard's panel grid (titles, kinds, positions) as a PNG, for the README.

No Grafana runs here, so the picture is drawn from the dashboard JSON itself: it shows exactly the
layout Grafana will load, and redrawing it after ``dashboard.py`` changes keeps the two in step.

    .venv/bin/python deploy/grafana/render_layout.py   # -> docs/img/dashboard-layout.png
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "dashboards" / "stream-tagger.json"
OUTPUT = HERE.parents[1] / "docs" / "img" / "dashboard-layout.png"
GRID_COLUMNS = 24
COLOURS = {"timeseries": "#dbe9f6", "stat": "#e2f0d9", "table": "#fdf0d5", "heatmap": "#f8dcdc"}


def render(dashboard: dict, out: Path) -> None:
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig, ax = plt.subplots(figsize=(12, 12 * rows / GRID_COLUMNS / 1.6))
    ax.set(xlim=(0, GRID_COLUMNS), ylim=(rows, 0))
    ax.axis("off")
    for panel in panels:
        pos = panel["gridPos"]
        if panel["type"] == "row":
            ax.text(pos["x"] + 0.1, pos["y"] + 0.7, panel["title"], fontsize=11, weight="bold")
            continue
        ax.add_patch(
            FancyBboxPatch(
                (pos["x"] + 0.1, pos["y"] + 0.1),
                pos["w"] - 0.2,
                pos["h"] - 0.2,
                boxstyle="round,pad=0,rounding_size=0.2",
                facecolor=COLOURS.get(panel["type"], "#eeeeee"),
                edgecolor="#777777",
            )
        )
        title = textwrap.fill(panel["title"], width=max(12, pos["w"] * 3))
        ax.text(pos["x"] + 0.35, pos["y"] + 0.9, title, fontsize=8, weight="bold", va="top")
        queries = len(panel.get("targets", []))
        series = ", ".join(t["legendFormat"] for t in panel["targets"] if t["legendFormat"] != "__auto")
        ax.text(
            pos["x"] + 0.35,
            pos["y"] + 2.6,
            textwrap.fill(series, width=max(14, pos["w"] * 4)),
            fontsize=7,
            color="#333333",
            va="top",
            family="monospace",
        )
        ax.text(
            pos["x"] + 0.35,
            pos["y"] + pos["h"] - 0.45,
            f"{panel['type']} · {queries} quer{'y' if queries == 1 else 'ies'}",
            fontsize=7,
            color="#555555",
        )
    ax.set_title(f"Grafana dashboard \u201c{dashboard['title']}\u201d: panel layout", fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    render(json.loads(DASHBOARD.read_text()), target)
    print(f"wrote {target}")
