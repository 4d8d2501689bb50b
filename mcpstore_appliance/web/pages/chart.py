"""Geometry of the small server-rendered SVG bar chart (downloads per day). Presentation only: the template
draws the rectangles; no chart library and no script."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 28


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: str
    count: int


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[tuple[float, str]]  # x positions and day labels under the axis
    axis_y: float
    left: float
    right: float
    total: int
    peak: int


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n that is >= value, so grid lines fall on round numbers."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def bar_chart(series: list[dict], width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """`series`: [{"day": "YYYY-MM-DD", "count": n}, ...] oldest first."""
    peak = max((int(point["count"]) for point in series), default=0)
    top = nice_ceiling(max(peak, 1))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / max(len(series), 1)
    bars = []
    for i, point in enumerate(series):
        count = int(point["count"])
        bar_h = plot_h * count / top
        bars.append(Bar(round(LEFT + i * slot + slot * 0.15, 2), round(TOP + plot_h - bar_h, 2),
                        round(slot * 0.7, 2), round(bar_h, 2), point["day"], count))
    ticks = [Tick(round(TOP + plot_h - plot_h * f, 2), str(int(top * f)) if top * f == int(top * f) else f"{top * f:g}")
             for f in (0, 0.5, 1)]
    every = max(1, len(series) // 6)
    labels = [(round(LEFT + i * slot + slot / 2, 2), point["day"][5:]) for i, point in enumerate(series)
              if i % every == 0]
    return Chart(width, height, bars, ticks, labels, TOP + plot_h, LEFT, width - RIGHT,
                 sum(int(p["count"]) for p in series), peak)
