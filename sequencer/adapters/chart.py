"""The report chart as a PNG, for `refseq report --chart` and the web's ``/report/chart.png``.

matplotlib is imported inside :func:`draw_chart`, not at the top: only a chart pays for it. The
figure is drawn on an Agg canvas directly (no pyplot, no global state, no display needed).
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

from sequencer.core.report import Report

# The funnel's stages: (label, count attribute, rate attribute or None). The CLI's tables, the
# web page and the chart show them in this order.
STAGES: tuple[tuple[str, str, str | None], ...] = (
    ("enrolled", "enrolled", None),
    ("sent", "sent", "send_rate"),
    ("bounced", "bounced", "bounce_rate"),
    ("auto-replied", "auto_replied", "auto_reply_rate"),
    ("replied", "replied", "reply_rate"),
    ("interested", "interested", "interested_rate"),
    ("unsubscribed", "unsubscribed", "unsubscribe_rate"),
    ("handed off", "handed_off", "handoff_rate"),
)
NAME_CHARS = 32  # a longer referrer name is cut with an ellipsis on the chart

# matplotlib's font cache and text layout are shared by every figure: one drawing at a time
# (the web app draws in a thread pool).
_LOCK = threading.Lock()


def _short(text: str) -> str:
    return text if len(text) <= NAME_CHARS else text[: NAME_CHARS - 1] + "…"


def draw_chart(
    report: Report, target: Path | BinaryIO, top: int = 10, where: str | None = None
) -> None:
    """Write a PNG to ``target``: the funnel warm versus cold (grouped bars) and the top
    referrers (horizontal bars). ``where`` names what is shown (default: the report's campaign,
    or "all campaigns"). Names from the data are drawn as plain text (``$`` is not mathtext).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with _LOCK:
        fig = Figure(figsize=(12, 5.5), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        funnel_ax, referrers_ax = fig.subplots(1, 2, width_ratios=(3, 2))

        labels = [label for label, _, _ in STAGES]
        width = 0.4
        x = list(range(len(STAGES)))
        total = report.total
        for offset, name, f, colour in (
            (-width / 2, "warm", total.warm, "#d9822b"),
            (width / 2, "cold", total.cold, "#3b6ea8"),
        ):
            values = [getattr(f, count) for _, count, _ in STAGES]
            bars = funnel_ax.bar([i + offset for i in x], values, width, label=name, color=colour)
            funnel_ax.bar_label(bars, fontsize=8, padding=2)
        funnel_ax.set_xticks(x, labels, rotation=30, ha="right")
        funnel_ax.set_ylabel("enrollments")
        shown = where or report.campaign or "all campaigns"
        funnel_ax.set_title(f"Funnel by temperature: {_short(shown)}", parse_math=False)
        funnel_ax.legend()
        funnel_ax.margins(y=0.12)
        funnel_ax.yaxis.set_major_locator(MaxNLocator(integer=True))

        leaders = list(report.referrers[:top])[::-1]  # the best at the top
        names = [_short(r.referrer_name or r.referrer_id) for r in leaders]
        y = list(range(len(leaders)))
        height = 0.27
        for offset, name, attr, colour in (
            (height, "intros", "intros", "#b8c4d6"),
            (0.0, "replies", "replies", "#6a9fd4"),
            (-height, "handoffs", "handoffs", "#2e7d32"),
        ):
            referrers_ax.barh(
                [i + offset for i in y],
                [getattr(r, attr) for r in leaders],
                height,
                label=name,
                color=colour,
            )
        referrers_ax.set_yticks(y, names, parse_math=False)
        referrers_ax.set_xlabel("count")
        referrers_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        referrers_ax.set_title(f"Top {len(leaders)} referrers (by handoffs, then replies)")
        if leaders:
            referrers_ax.legend(loc="lower right")
        else:
            referrers_ax.text(0.5, 0.5, "no referrers yet", ha="center", va="center")

        with warnings.catch_warnings():
            # A name in a script the default font lacks draws as boxes: not worth stopping for.
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
            fig.savefig(target, format="png")


def write_chart(report: Report, path: Path, top: int = 10) -> None:
    """The chart as a PNG file (``refseq report --chart FILE.png``)."""
    draw_chart(report, path, top)


def chart_png(report: Report, top: int = 10, where: str | None = None) -> bytes:
    """The chart as PNG bytes (the web page's image)."""
    buffer = io.BytesIO()
    draw_chart(report, buffer, top, where)
    return buffer.getvalue()
