"""Inline SVG charts for the run pages (report/): no script, no font or
stylesheet fetched; each chart scales with the page (viewBox, width 100%)
and every point carries a <title> (shown on hover, read by screen readers).

- ``scatter``: series of points (a line through them when asked), linear or
  log x axis, optional vertical marks (a latency target);
- ``bars``: horizontal bars with their values (phases, per-op time);
- ``histogram``: counts of values in equal bins (latency distributions);
- ``blocks``: a network's blocks as a row of boxes (type by colour, width
  by channels, height by kernel, the stride and expansion written in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any, Sequence

W, H = 640, 320  # the drawing's own units; it scales to the page
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 30, 44  # (the legend sits in a row above the plot)
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
BLOCK_COLORS = {"dw": "#4c78a8", "fused": "#f58518", "gc": "#54a24b", "grouped": "#54a24b", "stem": "#9d9d9d",
                "head": "#9d9d9d"}


@dataclass
class Series:
    name: str
    points: list[tuple[float, float, str]]  # x, y, the point's title
    color: str | None = None
    line: bool = False  # joined in x order
    size: float = 3.5
    hollow: bool = False
    labels: list[str] | None = None  # written beside the points (few points: the students)


@dataclass
class Mark:
    x: float
    label: str
    color: str = "#555"


@dataclass
class Axes:
    x_label: str
    y_label: str
    log_x: bool = False
    marks: list[Mark] = field(default_factory=list)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values between lo and hi."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def _value(v: float) -> str:
    """A bar's figure: whole thousands with separators, else three digits."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _log_ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                out.append(v)
    return out or [lo, hi]


def _frame(label: str, body: list[str], height: int = H) -> str:
    return (f'<svg class="chart" viewBox="0 0 {W} {height}" role="img" aria-label="{escape(label)}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>')


def scatter(series: Sequence[Series], axes: Axes, label: str) -> str:
    """Points of ``series`` on shared axes (empty series drawn as a note)."""
    pts = [(x, y) for s in series for x, y, _ in s.points if _finite(x) and _finite(y) and (x > 0 or not axes.log_x)]
    xs = [x for x, _ in pts] + [m.x for m in axes.marks if _finite(m.x)]
    ys = [y for _, y in pts]
    if not pts:
        return _frame(label, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">nothing to draw</text>'])
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if axes.log_x:
        x0, x1 = x0 / 1.25, x1 * 1.25
    else:
        span = (x1 - x0) or abs(x1) or 1.0
        x0, x1 = x0 - 0.06 * span, x1 + 0.06 * span
    span = (y1 - y0) or abs(y1) or 1.0
    y0, y1 = y0 - 0.08 * span, y1 + 0.08 * span

    def px(x: float) -> float:
        if axes.log_x:
            f = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0))
        else:
            f = (x - x0) / (x1 - x0)
        return PAD_L + f * (W - PAD_L - PAD_R)

    def py(y: float) -> float:
        return H - PAD_B - (y - y0) / (y1 - y0) * (H - PAD_T - PAD_B)

    body = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" '
            'fill="none" stroke="#bbb"/>']
    for t in (_log_ticks(x0, x1) if axes.log_x else _ticks(x0, x1)):
        body.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{H - PAD_B}" y2="{H - PAD_B + 4}" stroke="#888"/>'
                    f'<text x="{px(t):.1f}" y="{H - PAD_B + 16}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
    for t in _ticks(y0, y1):
        body.append(f'<line x1="{PAD_L - 4}" x2="{W - PAD_R}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
                    f'<text x="{PAD_L - 6}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    body.append(f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 8}" text-anchor="middle">{escape(axes.x_label)}</text>'
                f'<text x="14" y="{(PAD_T + H - PAD_B) / 2}" text-anchor="middle" '
                f'transform="rotate(-90 14 {(PAD_T + H - PAD_B) / 2})">{escape(axes.y_label)}</text>')
    for m in axes.marks:
        if _finite(m.x) and (m.x > 0 or not axes.log_x):
            body.append(f'<line x1="{px(m.x):.1f}" x2="{px(m.x):.1f}" y1="{PAD_T}" y2="{H - PAD_B}" stroke="{m.color}" '
                        f'stroke-dasharray="5 4"/><text x="{px(m.x) + 4:.1f}" y="{PAD_T + 12}" class="tick">'
                        f'{escape(m.label)}</text>')
    legend = []
    for i, s in enumerate(series):
        color = s.color or COLORS[i % len(COLORS)]
        names = s.labels or [""] * len(s.points)
        ok = sorted((x, y, t, n) for (x, y, t), n in zip(s.points, names)
                    if _finite(x) and _finite(y) and (x > 0 or not axes.log_x))
        if s.line and len(ok) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y, _, _) in enumerate(ok))
            body.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        fill = "none" if s.hollow else color
        for x, y, t, n in ok if s.size > 0 else []:  # (size 0: a line alone)
            body.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{s.size}" fill="{fill}" stroke="{color}">'
                        f'<title>{escape(t)}</title></circle>')
            if n:
                body.append(f'<text x="{px(x) + 6:.1f}" y="{py(y) - 5:.1f}" class="tick">{escape(n)}</text>')
        legend.append((s.name, color, fill))
    x = PAD_L
    for name, color, fill in legend:  # one row above the plot, clear of every point
        body.append(f'<circle cx="{x + 4}" cy="{PAD_T - 14}" r="4" fill="{fill}" stroke="{color}"/>'
                    f'<text x="{x + 12}" y="{PAD_T - 10}" class="tick">{escape(name)}</text>')
        x += 24 + 6.5 * len(name)
    return _frame(label, body)


def bars(rows: Sequence[tuple[str, float]], unit: str, label: str, color: str = COLORS[0]) -> str:
    """Horizontal bars, one per (name, value), the value written beside."""
    rows = [(n, v) for n, v in rows if _finite(v)]
    if not rows:
        return _frame(label, [f'<text x="{W / 2}" y="40" text-anchor="middle">nothing to draw</text>'], 60)
    top = max(v for _, v in rows) or 1.0
    row_h, left = 22, 170
    height = PAD_T + row_h * len(rows) + 8
    body = []
    for i, (name, v) in enumerate(rows):
        y = PAD_T + i * row_h
        w = max(0.0, v) / top * (W - left - 90)
        body.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" class="tick">{escape(name[:28])}</text>'
                    f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}">'
                    f'<title>{escape(name)}: {v:.4g} {escape(unit)}</title></rect>'
                    f'<text x="{left + w + 4:.1f}" y="{y + 15}" class="tick">{_value(v)} {escape(unit)}</text>')
    return _frame(label, body, height)


def histogram(groups: Sequence[tuple[str, Sequence[float]]], unit: str, label: str, bins: int = 30) -> str:
    """Each group's values counted in the same bins (one colour each):
    log-spaced when the values span more than 3x (a latency's tail), equal
    otherwise."""
    vals = [v for _, vs in groups for v in vs if _finite(v)]
    if not vals:
        return _frame(label, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">nothing to draw</text>'])
    lo, hi = min(vals), max(vals)
    log = lo > 0 and hi / lo > 3
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    if log:
        edges = [lo * (hi / lo) ** (j / bins) for j in range(bins + 1)]
    else:
        edges = [lo + (hi - lo) * j / bins for j in range(bins + 1)]

    def which(v: float) -> int:
        f = math.log(v / lo) / math.log(hi / lo) if log else (v - lo) / (hi - lo)
        return min(bins - 1, max(0, int(f * bins)))

    series = []
    for i, (name, vs) in enumerate(groups):
        c = [0] * bins
        for v in vs:
            if _finite(v) and (v > 0 or not log):
                c[which(v)] += 1
        mid = [math.sqrt(edges[j] * edges[j + 1]) if log else (edges[j] + edges[j + 1]) / 2 for j in range(bins)]
        pts = [(mid[j], float(n), f"{name}: {n} runs in {edges[j]:.4g}-{edges[j + 1]:.4g} {unit}")
               for j, n in enumerate(c)]
        series.append(Series(name, pts, COLORS[i % len(COLORS)], line=True, size=2))
    return scatter(series, Axes(unit + (" (log scale)" if log else ""), "runs", log_x=log), label)


def blocks(stem: Any, layers: Sequence[Any], head: Any, label: str) -> str:
    """The network as a row of boxes: ``layers`` are objects with type,
    kernel, expansion, stride, filters (and groups); stem and head may be
    None. Box width grows with the channels, height with the kernel."""
    items = []
    if stem is not None:
        items.append(("stem", f"stem k{stem.kernel}", stem.filters, stem.kernel, stem.stride,
                      f"stem: {stem.filters} channels, kernel {stem.kernel}, stride {stem.stride}"))
    for i, b in enumerate(layers):
        g = getattr(b, "groups", 1) or 1
        short = b.type.removeprefix("ibn_")  # the spec's type (ibn_dw) as its one-line form writes it (dw)
        what = {"dw": "depthwise IBN", "fused": "fused IBN", "gc": "group-conv IBN", "grouped": "grouped IBN"}.get(
            short, b.type)
        items.append((short, f"{short} k{b.kernel} e{b.expansion:g}", b.filters, b.kernel, b.stride,
                      f"block {i + 1}: {what}, kernel {b.kernel}, expansion {b.expansion:g}, stride {b.stride}, "
                      f"{b.filters} channels" + (f", {g} groups" if g > 1 else "")))
    if head is not None:
        items.append(("head", "head", head.filters, 1, 1, f"head: {head.filters} channels, pooled, classifier"))
    if not items:
        return _frame(label, [f'<text x="{W / 2}" y="40" text-anchor="middle">no blocks</text>'], 60)
    per_row = 8
    rows = math.ceil(len(items) / per_row)
    cell_w, cell_h = (W - 16) / per_row, 118
    height = rows * cell_h + 8
    cmax = max(math.log2(max(2, c)) for _, _, c, _, _, _ in items)
    body = []
    for i, (kind, text, ch, k, s, title) in enumerate(items):
        r, c = divmod(i, per_row)
        x, y = 8 + c * cell_w, 4 + r * cell_h
        w = (0.35 + 0.6 * math.log2(max(2, ch)) / cmax) * (cell_w - 10)
        h = 28 + 7 * min(k, 7)
        bx, by = x + (cell_w - 10 - w) / 2, y + 4 + (80 - h) / 2
        color = BLOCK_COLORS.get(kind, "#777")
        body.append(f'<g><title>{escape(title)}</title><rect x="{bx:.1f}" y="{by:.1f}" width="{w:.1f}" height="{h}" '
                    f'rx="4" fill="{color}" opacity="0.85"/>'
                    f'<text x="{x + (cell_w - 10) / 2:.1f}" y="{y + 98}" text-anchor="middle" class="tick">'
                    f'{escape(text)}</text><text x="{x + (cell_w - 10) / 2:.1f}" y="{y + 111}" text-anchor="middle" '
                    f'class="tick">c{ch}{" s" + str(s) if s > 1 else ""}</text></g>')
        if c < per_row - 1 and i < len(items) - 1:
            body.append(f'<line x1="{x + cell_w - 10:.1f}" x2="{x + cell_w:.1f}" y1="{y + 44}" y2="{y + 44}" '
                        'stroke="#999"/>')
    return _frame(label, body, height)
