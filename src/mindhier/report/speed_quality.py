"""The report's "Decoder speed and quality" section: what `mindhier bench decoders --out FILE.json` measured.

The record's `speed_quality` is a list of points, one per decoder option:

    {"option": str, "family": "scale-wise" | "ddim", "compiled": bool,
     "ms_per_image": {"1": float, "32": float},  # batch size (an int before JSON) -> milliseconds per image
     "metrics": {"pixcorr": float, "ssim": float, "lite0_late.two_way": float, ...}}

The section holds a caption (split, protocol, machine, speed ratios), a table with one row per point, and, per
batch size, scatter plots of quality against ms/image on a log axis. The plots are hand-written inline SVG, so
the page needs no plotting library and opens from disk. No tensors here, so no shape letters.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mindhier.errors import DataError

DECODERS_BENCHMARK = "decoders"  # the `benchmark` field of what `mindhier bench decoders` writes
FAMILY_COLOURS = {"scale-wise": "#1f77b4", "ddim": "#d62728"}
TABLE_METRICS = {  # record key -> column title, in column order
    "pixcorr": "PixCorr",
    "ssim": "SSIM",
    "lite0_late.two_way": "Lite0-late 2-way, proxy",
    "lite2_early.two_way": "Lite2-early 2-way, proxy",
    "judge.category_f1": "judge category F1",
}
PLOTTED_METRICS = ("pixcorr", "lite0_late.two_way")
POINT_FIELDS = {"option": str, "family": str, "ms_per_image": dict, "metrics": dict}
LABEL_CHARS = 34  # longer option names are shortened on the plots (the full name is the point's tooltip)
CHAR_WIDTH = 5.6  # estimated width of a character at the plots' font size, to keep labels apart

# plot geometry, in SVG user units (pixels)
WIDTH, HEIGHT = 520, 300
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 30, 46


def validate_decoders_record(record: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """`record` if it is a `mindhier bench decoders` result with a well-formed `speed_quality` list; otherwise a
    `DataError` whose one line names `path` and what is wrong."""
    fix = "pass the file `mindhier bench decoders --out` wrote"
    if not isinstance(record, dict):
        raise DataError(f"{path} holds a {type(record).__name__}, not a benchmark record; {fix}")
    if record.get("benchmark") != DECODERS_BENCHMARK:
        raise DataError(
            f"{path} is not a `mindhier bench decoders` result (benchmark = {record.get('benchmark')!r}); {fix}"
        )
    points = record.get("speed_quality")
    if not isinstance(points, list) or not points:
        raise DataError(
            f"{path} has no speed_quality list of points (found {type(points).__name__}); rerun "
            "`mindhier bench decoders --out FILE.json` with this version"
        )
    for k, point in enumerate(points):
        where = f"{path}: speed_quality[{k}]"
        if not isinstance(point, dict):
            raise DataError(f"{where} is a {type(point).__name__}, not a point object; {fix}")
        for key, kind in POINT_FIELDS.items():
            if not isinstance(point.get(key), kind):
                found = "missing" if key not in point else type(point[key]).__name__
                raise DataError(f"{where} needs {key!r} as {kind.__name__} ({found}); {fix}")
        if point["family"] not in FAMILY_COLOURS:
            raise DataError(f"{where} has family {point['family']!r}, not one of {', '.join(FAMILY_COLOURS)}; {fix}")
        for batch, ms in point["ms_per_image"].items():
            if not _is_batch_size(batch) or not _is_number(ms) or not 0 < ms < math.inf:
                raise DataError(
                    f"{where}: ms_per_image needs batch size -> positive ms, found {batch!r}: {ms!r};"
                    " rerun the benchmark that wrote it"
                )
        for name, value in point["metrics"].items():
            if value is not None and not _is_number(value):
                raise DataError(
                    f"{where}: metric {name!r} is {value!r}, not a number; rerun the benchmark that wrote it"
                )
    return record


def speed_quality_section(record: Mapping[str, Any]) -> str:
    """The HTML section for one validated decoders benchmark record."""
    points = [  # batch sizes as strings, as they are once the record has been through JSON
        {**p, "ms_per_image": {str(b): ms for b, ms in p["ms_per_image"].items()}} for p in record["speed_quality"]
    ]
    points += matched_points(record)
    batches = sorted({b for p in points for b in p["ms_per_image"]}, key=int)
    parts = [
        "<h2>Decoder speed and quality</h2>",
        f"<p class=note>{html.escape(caption(record))}</p>",
        speed_quality_table(points, batches),
    ]
    matched = _mapping(_mapping(record.get("matched_quality")).get("metrics"))
    if matched:
        parts += ["<h3>Speed at matched quality</h3>", matched_quality_table(matched, batches)]
    for batch in batches:
        plots = []
        for metric in PLOTTED_METRICS:
            plotted = [
                (p["option"], p["family"], p["ms_per_image"][batch], _metric(p, metric))
                for p in points
                if batch in p["ms_per_image"] and _metric(p, metric) is not None
            ]
            if plotted:
                plots.append(log_ms_scatter(plotted, f"ms/image at batch {batch} (log scale)", TABLE_METRICS[metric]))
        if plots:
            parts += [f"<h3>Quality against time per image, batch {html.escape(batch)}</h3>", "<div>", *plots, "</div>"]
    return "\n".join(parts)


def matched_points(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The DDIM step counts that match the scale-wise decoder's quality (`matched_quality`), as plotted points: their
    timing from the matched run, their scores from the step curve."""
    section = _mapping(record.get("matched_quality"))
    curve = _mapping(record.get("quality_vs_ddim_steps"))
    by_steps: dict[int, dict[str, Any]] = {}
    for metric, point in _mapping(section.get("metrics")).items():
        steps = point["ddim_steps"]
        entry = by_steps.setdefault(steps, {"metrics_matched": [], "ms": point["ms_per_image"]})
        entry["metrics_matched"].append(metric)
    points = []
    for steps, entry in sorted(by_steps.items()):
        scores = {m: v["mean"] for m, v in _mapping(curve.get(str(steps))).items() if isinstance(v, Mapping)}
        points.append(
            {
                "option": f"ddim-{steps}, matched on {', '.join(entry['metrics_matched'])}",
                "family": "ddim",
                "compiled": section.get("mode") == "compiled",
                "ms_per_image": {str(b): ms["ddim"] for b, ms in entry["ms"].items()},
                "metrics": scores,
            }
        )
    return points


def matched_quality_table(matched: Mapping[str, Any], batches: Sequence[str]) -> str:
    """Per metric: the scale-wise score, the fewest DDIM steps reaching it (or the best DDIM point), and the time
    ratio DDIM / scale-wise per batch size."""
    head = (
        "<tr><th>metric</th><th>scale-wise</th><th>DDIM steps</th><th>DDIM score</th>"
        + "".join(f"<th>DDIM / scale-wise, batch {html.escape(b)}</th>" for b in batches)
        + "</tr>"
    )
    rows = []
    for metric, point in matched.items():
        steps = f"{point['ddim_steps']}" + ("" if point["reached"] else " (never reaches; best point)")
        ratios = "".join(_number_cell(_mapping(point.get("ratio")).get(b), 2) for b in batches)
        rows.append(
            f"<tr><td>{html.escape(TABLE_METRICS.get(metric, metric))}</td>{_number_cell(point['scale_wise'], 3)}"
            f"<td>{html.escape(steps)}</td>{_number_cell(point['ddim_score'], 3)}{ratios}</tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def caption(record: Mapping[str, Any]) -> str:
    """One line (plain text, escaped by the caller): split, protocol, machine, repeats and speed ratios."""
    facts = [f"Split {record.get('split', '?')}; {str(record.get('protocol', 'protocol not recorded')).rstrip('.')}."]
    machine = _machine_line(_mapping(record.get("machine")), _mapping(record.get("provenance")))
    if machine:
        facts.append(f"Machine: {machine}.")
    if "repeats" in record:
        facts.append(f"ms/image is the median of {record['repeats']} timed runs after a warm-up.")
    ratios = _mapping(record.get("speed_ratio_diffusion_over_scale_wise"))
    if ratios:
        shown = "; ".join(
            f"{name}: " + ", ".join(f"batch {b} ×{r}" for b, r in _mapping(per_batch).items())
            for name, per_batch in ratios.items()
        )
        facts.append(f"Speed ratios (diffusion / scale-wise): {shown}.")
    return " ".join(facts)


def _machine_line(machine: Mapping[str, Any], provenance: Mapping[str, Any]) -> str:
    """The processor, cores, threads, accelerator and torch version, from `provenance.machine()`'s keys (and the
    shorter names cpu / threads / device / torch, where a record uses them)."""
    shown = []
    cpu = machine.get("processor") or machine.get("cpu")
    if cpu:
        shown.append(f"CPU {cpu}")
    if machine.get("cpu_count"):
        shown.append(f"{machine['cpu_count']} cores")
    threads = machine.get("torch_threads") or machine.get("threads")
    if threads:
        shown.append(f"{threads} torch threads")
    device = machine.get("cuda_device") or machine.get("device")
    if device:
        shown.append(f"device {device}")
    elif machine.get("cuda") is False:
        shown.append("no CUDA device")
    torch_version = machine.get("torch") or provenance.get("torch")
    if torch_version:
        shown.append(f"torch {torch_version}")
    return ", ".join(shown)


def speed_quality_table(points: Sequence[Mapping[str, Any]], batches: Sequence[str]) -> str:
    """One row per point: option, family, compiled, ms/image per batch size, and every metric some point has."""
    metrics = [m for m in TABLE_METRICS if any(_metric(p, m) is not None for p in points)]
    head = (
        "<tr><th>option</th><th>family</th><th>compiled</th>"
        + "".join(f"<th>ms/image, batch {html.escape(b)}</th>" for b in batches)
        + "".join(f"<th>{html.escape(TABLE_METRICS[m])}</th>" for m in metrics)
        + "</tr>"
    )
    rows = []
    for p in points:
        compiled = {True: "yes", False: "no"}.get(p.get("compiled"), "—")
        times = "".join(_number_cell(p["ms_per_image"].get(b), 1) for b in batches)
        scores = "".join(_number_cell(_metric(p, m), 3) for m in metrics)
        rows.append(
            f"<tr><td>{html.escape(p['option'])}</td><td>{html.escape(p['family'])}</td><td>{compiled}</td>"
            f"{times}{scores}</tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def log_ms_scatter(points: Sequence[tuple[str, str, float, float]], x_label: str, y_label: str) -> str:
    """An inline SVG scatter of (option, family, ms, value) points: x = ms on a log10 axis, y = value; points
    coloured by family and labelled by option. Each point is a `<g class='point'>` whose tooltip is the option."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    log_lo = math.floor(math.log10(min(p[2] for p in points)))
    log_hi = max(math.ceil(math.log10(max(p[2] for p in points))), log_lo + 1)
    lowest, highest = min(p[3] for p in points), max(p[3] for p in points)
    headroom = 0.08 * (highest - lowest)  # room for the labels of the highest and lowest points
    y_ticks = nice_ticks(lowest - headroom, highest + headroom)

    def x_of(ms: float) -> float:
        return LEFT + (math.log10(ms) - log_lo) / (log_hi - log_lo) * plot_width

    def y_of(value: float) -> float:
        return TOP + (y_ticks[-1] - value) / (y_ticks[-1] - y_ticks[0]) * plot_height

    bottom, right = TOP + plot_height, LEFT + plot_width
    shapes = [
        f"<rect x='{LEFT}' y='{TOP}' width='{plot_width}' height='{plot_height}' fill='none' stroke='#999'/>",
    ]
    for tick in log_ticks(log_lo, log_hi):
        x = x_of(tick)
        shapes += [
            f"<line x1='{x:.1f}' y1='{TOP}' x2='{x:.1f}' y2='{bottom}' stroke='#eee'/>",
            f"<text x='{x:.1f}' y='{bottom + 14}' text-anchor='middle'>{tick:g}</text>",
        ]
    decimals = max(0, -math.floor(math.log10(y_ticks[1] - y_ticks[0]) + 1e-9))
    for tick in y_ticks:
        y = y_of(tick)
        shapes += [
            f"<line x1='{LEFT}' y1='{y:.1f}' x2='{right}' y2='{y:.1f}' stroke='#eee'/>",
            f"<text x='{LEFT - 4}' y='{y + 4:.1f}' text-anchor='end'>{tick:.{decimals}f}</text>",
        ]
    shapes += [
        f"<text x='{LEFT + plot_width / 2:.1f}' y='{HEIGHT - 8}' text-anchor='middle'>{html.escape(x_label)}</text>",
        f"<text x='14' y='{TOP + plot_height / 2:.1f}' text-anchor='middle' "
        f"transform='rotate(-90 14 {TOP + plot_height / 2:.1f})'>{html.escape(y_label)}</text>",
    ]
    for k, (family, colour) in enumerate(FAMILY_COLOURS.items()):
        x = LEFT + 4 + 90 * k
        shapes.append(
            f"<circle cx='{x + 4}' cy='{TOP - 12}' r='4' fill='{colour}'/>"
            f"<text x='{x + 12}' y='{TOP - 8}'>{html.escape(family)}</text>"
        )
    centres = [(x_of(ms), y_of(value)) for _, _, ms, value in points]
    labels = [option if len(option) <= LABEL_CHARS else option[: LABEL_CHARS - 1] + "…" for option, *_ in points]
    placed = place_labels(centres, labels, (LEFT, TOP, right, bottom))
    for (option, family, ms, value), (x, y), label, (text_x, text_y, anchor) in zip(
        points, centres, labels, placed, strict=True
    ):
        shapes.append(
            f"<g class='point' data-option='{html.escape(option)}' data-ms='{ms!r}' data-value='{value!r}'>"
            f"<title>{html.escape(option)}: {ms:.1f} ms/image, {value:.3f}</title>"
            f"<circle cx='{x:.2f}' cy='{y:.2f}' r='4' fill='{FAMILY_COLOURS[family]}'/>"
            f"<text x='{text_x:.1f}' y='{text_y:.1f}' text-anchor='{anchor}'>{html.escape(label)}</text></g>"
        )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' viewBox='0 0 {WIDTH} {HEIGHT}' "
        f"role='img' aria-label='{html.escape(f'{y_label} against {x_label}')}' font-size='10' "
        f"font-family='sans-serif'>{''.join(shapes)}</svg>"
    )


def place_labels(
    centres: Sequence[tuple[float, float]], labels: Sequence[str], box: tuple[float, float, float, float]
) -> list[tuple[float, float, str]]:
    """(x, baseline y, text-anchor) of each point's label: beside its point, towards the middle of the plot first,
    at the nearest height where it stays inside `box` (left, top, right, bottom) and covers the least of the labels
    placed before it and of the points. Widths are estimated from the length."""
    left, top, right, bottom = box
    dots = [(x - 4, y - 4, x + 4, y + 4) for x, y in centres]
    taken: list[tuple[float, float, float, float]] = []
    placed = []
    for (x, y), label in zip(centres, labels, strict=True):
        width = CHAR_WIDTH * len(label)
        inward = ("end", "start") if x > (left + right) / 2 else ("start", "end")
        best = None
        for dy in (-5, 12, -15, 22, -25, 32, -35, 42, -45, 52):
            for anchor in inward:
                text_x = x - 6 if anchor == "end" else x + 6
                x0 = text_x - width if anchor == "end" else text_x
                rect = (x0, y + dy - 9, x0 + width, y + dy + 2)
                outside = not (left <= rect[0] and rect[2] <= right and top <= rect[1] and rect[3] <= bottom)
                cost = 1e9 * outside + sum(_overlap_area(rect, other) for other in taken + dots)
                if best is None or cost < best[0]:
                    best = (cost, (text_x, y + dy, anchor), rect)
        taken.append(best[2])
        placed.append(best[1])
    return placed


def _overlap_area(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def log_ticks(log_lo: int, log_hi: int) -> list[float]:
    """Tick values from 10**log_lo to 10**log_hi: the decades, and 2 and 5 between them when there are few."""
    between = (1, 2, 5) if log_hi - log_lo <= 2 else (1,)
    ticks = [m * 10.0**k for k in range(log_lo, log_hi) for m in between]
    return [*ticks, 10.0**log_hi]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` evenly spaced round ticks (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if hi - lo < 1e-12:
        pad = max(abs(lo) * 0.05, 0.01)
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / (count - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    start, stop = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return [start + k * step for k in range(round((stop - start) / step) + 1)]


def _metric(point: Mapping[str, Any], name: str) -> float | None:
    """The point's value of `name`, or None when absent or not finite."""
    value = point["metrics"].get(name)
    return float(value) if _is_number(value) and math.isfinite(value) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` where it is a mapping; an empty one where an optional field is absent or malformed."""
    return value if isinstance(value, Mapping) else {}


def _is_batch_size(key: Any) -> bool:
    """A JSON key "32", or the int 32 of a record not yet written."""
    return str(key).isdigit() and not isinstance(key, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_cell(value: float | None, decimals: int) -> str:
    return "<td>—</td>" if value is None else f"<td>{value:.{decimals}f}</td>"
