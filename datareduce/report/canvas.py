"""Figures on matplotlib's Agg canvas (no pyplot, no display), their PNG bytes, and the colours every figure uses."""
from __future__ import annotations

import io

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]
KEPT_COLOR, DROPPED_COLOR = "#2ca02c", "#d62728"
# The boxes drawn on detection images, one colour per class: none of them the kept / dropped frame colours.
BOX_COLORS = ["#1f77b4", "#ff7f0e", "#9467bd", "#00b8d4", "#e377c2", "#d4a017", "#8c564b", "#000000", "#bcbd22",
              "#17becf", "#7f7f7f", "#ff00ff"]


def new_figure(w, h):
    """An empty ``w`` × ``h`` inch figure at 100 dpi on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    """``fig`` as PNG bytes, at the figure's 100 dpi."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
