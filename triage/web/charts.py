"""Small server-side SVG charts (no JavaScript): stacked bars per day and horizontal bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from html import escape

from markupsafe import Markup


def trusted(svg: str) -> Markup:
    """A chart from this module, marked safe for templates: every label in it was escaped here."""
    return Markup(svg)  # noqa: S704 (built by this module, which escapes every label)


PALETTE = (
    "#0b5cad",
    "#d98e04",
    "#2d7a3e",
    "#a83232",
    "#6a4fa3",
    "#1f8a8a",
    "#8a6d1f",
    "#c2185b",
    "#455a64",
    "#7cb342",
    "#5c6bc0",
    "#ef6c00",
    "#00897b",
    "#8d6e63",
    "#9e9d24",
    "#3949ab",
    "#d81b60",
    "#757575",
    "#26a69a",
)


def stacked_days(
    days: Sequence[date],
    per_day: Mapping[date, Mapping[str, int]],
    width: int = 560,
    height: int = 220,
) -> str:
    """Tickets per day, stacked by category, with a legend."""
    keys = sorted({k for counts in per_day.values() for k in counts})
    colours = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}
    peak = max([sum(c.values()) for c in per_day.values()] + [1])
    plot_h, left, bar_w = height - 40, 30, (width - 40) / max(1, len(days))
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height + 16 * len(keys)}" role="img" '
        f'aria-label="Tickets per day by category">',
        f'<text x="0" y="12" font-size="11">{peak}</text>',
        f'<text x="0" y="{plot_h}" font-size="11">0</text>',
        f'<text x="{left}" y="12" font-size="11" font-style="italic">'
        "tickets per day (bars), by predicted category (colours)</text>",
        f'<text x="{width - 4}" y="{plot_h + 28}" font-size="11" font-style="italic" '
        'text-anchor="end">day (UTC)</text>',
    ]
    for i, day in enumerate(days):
        y: float = plot_h
        for key in keys:
            n = per_day.get(day, {}).get(key, 0)
            if n:
                h = n / peak * (plot_h - 20)
                y -= h
                parts.append(
                    f'<rect x="{left + i * bar_w:.1f}" y="{y:.1f}" width="{bar_w * 0.8:.1f}" '
                    f'height="{h:.1f}" fill="{colours[key]}">'
                    f"<title>{escape(day.isoformat())} {escape(key)}: {n}</title></rect>"
                )
        if i % 2 == 0:
            parts.append(
                f'<text x="{left + i * bar_w:.1f}" y="{plot_h + 14}" '
                f'font-size="10">{day:%d %b}</text>'
            )
    for j, key in enumerate(keys):
        y = height + 16 * j
        parts.append(
            f'<rect x="{left}" y="{y - 9}" width="10" height="10" fill="{colours[key]}"/>'
            f'<text x="{left + 16}" y="{y}" font-size="11">{escape(key)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bars(values: Mapping[str, float], label: str, percent: bool = False, width: int = 560) -> str:
    """Horizontal bars, one per key."""
    if not values:
        return f'<p class="meta">No data yet for {escape(label)}.</p>'
    peak = max([*values.values(), 1e-9])
    row_h, left = 20, 220
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {row_h * len(values) + 22}" role="img" '
        f'aria-label="{escape(label)}">',
        f'<text x="{width - 4}" y="{row_h * len(values) + 18}" font-size="11" font-style="italic" '
        f'text-anchor="end">{escape(label)}</text>',
    ]
    for i, (key, value) in enumerate(values.items()):
        w = value / peak * (width - left - 60)
        text = f"{value:.0%}" if percent else f"{value:g}"
        parts.append(
            f'<text x="0" y="{i * row_h + 14}" font-size="11">{escape(key)}</text>'
            f'<rect x="{left}" y="{i * row_h + 3}" width="{w:.1f}" height="{row_h - 6}" '
            'fill="#0b5cad"/>'
            f'<text x="{left + w + 4:.1f}" y="{i * row_h + 14}" font-size="11">{text}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def confusion(labels: Sequence[str], matrix: Sequence[Sequence[int]], cell: int = 22) -> str:
    """A confusion-matrix heatmap: rows are true labels, columns predicted; darker is more."""
    n = len(labels)
    left, top = 250, 44
    peak = max([max(row) for row in matrix] + [1])
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {left + n * cell + 10} {top + n * cell + 10}" '
        f'role="img" aria-label="Confusion matrix">',
        f'<text x="{left}" y="12" font-size="11" font-style="italic">'
        "predicted category (column numbers match the rows)</text>",
        f'<text x="0" y="{top - 8}" font-size="11" font-style="italic">true category</text>',
    ]
    for j in range(n):
        parts.append(
            f'<text x="{left + j * cell + cell / 2:.1f}" y="{top - 6}" font-size="10" '
            'text-anchor="middle">'
            f"<title>{escape(labels[j])}</title>{j + 1}</text>"
        )
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        parts.append(
            f'<text x="0" y="{top + i * cell + 15}" font-size="11">{i + 1}. {escape(label)}</text>'
        )
        for j, value in enumerate(row):
            shade = 255 - int(200 * value / peak) if value else 250
            colour = (
                f"rgb({shade},{shade},255)"
                if i == j
                else (f"rgb(255,{shade},{shade})" if value else "rgb(250,250,250)")
            )
            parts.append(
                f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell - 1}" '
                f'height="{cell - 1}" fill="{colour}">'
                f"<title>true {escape(label)}, predicted {escape(labels[j])}: {value}</title>"
                "</rect>"
            )
            if value:
                parts.append(
                    f'<text x="{left + j * cell + 3}" y="{top + i * cell + 15}" '
                    f'font-size="9">{value}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def risk_coverage(
    points: Sequence[Mapping[str, float]],
    operating: tuple[float, float] | None = None,
    width: int = 560,
    height: int = 260,
) -> str:
    """The risk-coverage curve: coverage of self-serve mail (x) against the share of wrong answers
    (y).

    `operating` is the model's actual (coverage, risk), drawn as a dot.
    """
    if not points:
        return (
            '<p class="meta">No risk-coverage figures for this model '
            "(trained before they were recorded).</p>"
        )
    peak = max(0.05, *(p["risk"] for p in points), operating[1] if operating else 0.0)
    left, top, plot_w, plot_h = 46, 10, width - 60, height - 50

    def xy(coverage: float, risk: float) -> str:
        return f"{left + coverage * plot_w:.1f},{top + plot_h - risk / peak * plot_h:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Risk-coverage curve">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + tick * plot_w
        parts.append(
            f'<text x="{x - 8:.1f}" y="{top + plot_h + 14}" font-size="10">{tick:.0%}</text>'
        )
        y = top + plot_h - tick * plot_h
        parts.append(
            f'<text x="0" y="{y + 4:.1f}" font-size="10">{tick * peak:.1%}</text>'
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
        )
    target_y = top + plot_h - 0.02 / peak * plot_h
    if peak >= 0.02:
        parts.append(
            f'<line x1="{left}" y1="{target_y:.1f}" x2="{left + plot_w}" y2="{target_y:.1f}" '
            'stroke="#a83232" stroke-dasharray="4 3">'
            "<title>2% risk (precision 0.98)</title></line>"
        )
    path = " ".join(xy(p["coverage"], p["risk"]) for p in points)
    parts.append(f'<polyline points="{path}" fill="none" stroke="#0b5cad" stroke-width="2"/>')
    for p in points:
        cx, cy = xy(p["coverage"], p["risk"]).split(",")
        parts.append(
            f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="#0b5cad">'
            f"<title>confidence &gt;= {p['threshold']:.3f}: "
            f"coverage {p['coverage']:.1%}, risk {p['risk']:.1%}</title></circle>"
        )
    if operating:
        cx, cy = xy(*operating).split(",")
        parts.append(
            f'<circle cx="{cx}" cy="{cy}" r="5" fill="#d98e04"><title>operating point: coverage '
            f"{operating[0]:.1%}, risk {operating[1]:.1%}</title></circle>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2 - 60:.1f}" y="{height - 4}" font-size="11">'
        "coverage of self-serve mail</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
