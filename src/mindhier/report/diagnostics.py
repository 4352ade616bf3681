"""Report sections that say where quality is lost: quality at each scale, consistency over samples, brain
correlation per ROI, and where each model started (prior or random).

Each takes the metrics records of a run's rows (`eval/<row>/metrics.json`) and returns HTML, writing its
figures into the report folder.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from mindhier import run_layout
from mindhier.config import ROI_NAMES
from mindhier.fileio import read_json
from mindhier.report import figures


def per_scale_section(records: dict[str, dict], out: Path, tag: str) -> str:
    rows = {name: r["per_scale"] for name, r in records.items() if r.get("per_scale")}
    if not rows:
        return ""
    figure = out / f"{tag}_per_scale.png"
    figures.per_scale_plot(records, figure)
    first = next(iter(rows.values()))
    resolutions = first["resolution_px"]
    head = (
        "<tr><th>row</th><th>metric</th>"
        + "".join(f"<th>scale {k + 1} ({px} px)</th>" for k, px in enumerate(resolutions))
        + "</tr>"
    )
    body = []
    for name, record in rows.items():
        for metric, values in record["means"].items():
            cells = "".join("<td>—</td>" if v is None else f"<td>{v:.3f}</td>" for v in values)
            body.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(metric)}</td>{cells}</tr>")
    note = html.escape(first.get("protocol", ""))
    extractor = html.escape(first.get("identification_extractor") or "none")
    return (
        "<h3>Quality at each scale (the image after scale k against the truth at that scale's resolution)</h3>"
        f"<img src='{figure.name}'><table>{head}{''.join(body)}</table>"
        f"<p class=note>{note}; identification extractor: {extractor}.</p>"
    )


def condition_use_section(records: dict[str, dict]) -> str:
    """Per scale, how much better each scale-wise row's generator predicts the true tokens from the row's own
    condition than from the null or a shuffled one (`metrics/condition_use.py`)."""
    rows = {name: r["condition_use"] for name, r in records.items() if r.get("condition_use")}
    if not rows:
        return ""
    first = next(iter(rows.values()))
    head = (
        "<tr><th>row</th><th>use over</th>"
        + "".join(f"<th>scale {s['scale']} ({s['side']}²)</th>" for s in first["scales"])
        + "</tr>"
    )
    body = []
    for name, record in rows.items():
        for over in ("null", "shuffled"):
            cells = "".join(f"<td>{_ci(s[f'use_over_{over}'])}</td>" for s in record["scales"])
            label = f"{html.escape(name)} ({html.escape(record.get('condition', ''))})"
            body.append(f"<tr><td>{label}</td><td>{over}</td>{cells}</tr>")
        accuracy = "".join(f"<td>{s['accuracy']['true']:.3f}</td>" for s in record["scales"])
        body.append(f"<tr><td>{html.escape(name)}</td><td>top-1 accuracy, true</td>{accuracy}</tr>")
    return (
        "<h3>Condition use per scale (nats per token; positive: the scale listens to its condition)</h3>"
        f"<table>{head}{''.join(body)}</table>"
        f"<p class=note>{html.escape(first['protocol'])}; {first['n_images']} test images.</p>"
    )


def consistency_section(records: dict[str, dict], out: Path, tag: str) -> str:
    rows = {name: r["consistency"] for name, r in records.items() if r.get("consistency")}
    if not rows:
        return ""
    figure = out / f"{tag}_consistency.png"
    figures.consistency_histograms(records, figure)
    head = (
        "<tr><th>row</th><th>samples per input</th><th>pixel variance (mean [CI])</th><th>median</th>"
        "<th>pairwise SSIM</th><th>pairwise feature r</th></tr>"
    )
    body = []
    for name, c in rows.items():
        feature = c.get("pairwise_feature_corr")
        body.append(
            f"<tr><td>{html.escape(name)}</td><td>{c['repeats']}</td><td>{_ci(c['pixel_variance'], 5)}</td>"
            f"<td>{c['pixel_variance_quantiles']['0.5']:.5f}</td><td>{_ci(c['pairwise_ssim'])}</td>"
            f"<td>{_ci(feature) if feature else '—'}</td></tr>"
        )
    return (
        "<h3>Consistency: R samples of the same brain input</h3>"
        f"<table>{head}{''.join(body)}</table><img src='{figure.name}'>"
        "<p class=note>Pixel variance: the variance over the samples of each pixel value (RGB in [0, 1]), averaged "
        "over the image; pairwise SSIM: MindEye2's SSIM between samples. Lower variance and higher SSIM: more "
        "stable reconstructions (the paper's claim against diffusion decoders).</p>"
    )


def brain_correlation_section(records: dict[str, dict]) -> str:
    rows = {name: r["brain_correlation"] for name, r in records.items() if r.get("brain_correlation")}
    if not rows:
        return ""
    if all(r.get("kind") == "absent" for r in rows.values()):
        missing = next(iter(rows.values()))["missing"]
        return f"<h3>Brain correlation</h3><p class=note>absent: {html.escape(missing)}</p>"
    rois = ["all", *ROI_NAMES]
    present = [roi for roi in rois if any(roi in r.get("rois", {}) for r in rows.values())]
    head = "<tr><th>ROI</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in rows) + "<th>true images</th></tr>"
    body = []
    for roi in present:
        cells = "".join(f"<td>{_ci(r.get('rois', {}).get(roi))}</td>" for r in rows.values())
        ceiling = next((r["rois"][roi]["on_true_images"] for r in rows.values() if roi in r.get("rois", {})), None)
        body.append(f"<tr><td>{roi}</td>{cells}<td>{'—' if ceiling is None else f'{ceiling:.3f}'}</td></tr>")
    first = next(r for r in rows.values() if r.get("rois"))
    return (
        "<h3>Brain correlation per ROI</h3>"
        f"<table>{head}{''.join(body)}</table>"
        f"<p class=note>{html.escape(first['score'])}. Encoding model: {html.escape(first['encoding_model'])}; "
        f"categories of the semantic voxels: {html.escape(first['categories'])}.</p>"
    )


def starts_section(run: Path, shared) -> str:
    """Where the tokenizer and each generator started, and how long they trained."""
    rows = []
    folders = [("tokenizer", shared(run, "tokenizer"))]
    folders += [(f"generator {p.name}", p) for p in sorted((run / run_layout.PIPELINE_GENERATORS).glob("*"))]
    for name, folder in folders:
        inputs, summary = folder / run_layout.INPUTS, folder / run_layout.SUMMARY
        if not summary.is_file():
            continue
        start = read_json(inputs, "run inputs").get("init", {}).get("source", "random") if inputs.is_file() else "?"
        s = read_json(summary, "training summary")
        condition = s.get("condition", "")
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(_start(start))}</td><td>{s['steps']}</td>"
            f"<td>{s['seconds']:.0f}</td><td>{html.escape(condition)}</td></tr>"
        )
    if not rows:
        return ""
    head = "<tr><th>model</th><th>started from</th><th>steps here</th><th>seconds</th><th>condition</th></tr>"
    return f"<h3>Models: where they started</h3><table>{head}{''.join(rows)}</table>"


def _start(source: str) -> str:
    return {
        "prior:tokenizer": "the shipped tokenizer prior (pretrained on scenes no dataset shows)",
        "prior:generator": "the shipped generator prior (pretrained on the teacher's features of those scenes)",
        "random": "random initialisation (trained from scratch)",
    }.get(source, source)


def _ci(entry: dict[str, Any] | None, digits: int = 3) -> str:
    if not entry or "mean" not in entry:
        return "—"
    lo, hi = entry["ci95"]
    return f"{entry['mean']:.{digits}f} <span class=note>[{lo:.{digits}f}, {hi:.{digits}f}]</span>"
