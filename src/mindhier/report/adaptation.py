"""The adaptation study's record and report (`mindhier eval adaptation`; the study is `mindhier.demo.adaptation`).

For every session budget of the held-out subject, the adapted encoder and the one trained from scratch on the
same sessions: test retrieval top-1 per image (brain → image and image → brain, MindEye's protocol) and the
evaluator's reconstruction metrics per image, each with its mean and bootstrap 95 % CI over the test images, and
adapted − scratch paired on the same images (CI, Wilcoxon p). The curves: metric against sessions, adapted and
scratch. The verdict checks the issue's targets: with one session, adapted beats scratch on retrieval and on the
Lite2-late proxy identification with CIs apart, and reaches ≥ 80 % of the all-data scratch model's retrieval.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from mindhier.fileio import read_json, staged_directory, write_json
from mindhier.metrics.recons_eval import METRICS_FILE, read_per_image
from mindhier.metrics.statistics import bootstrap_ci, paired_difference
from mindhier.run_layout import (
    CONFIG,
    PIPELINE_CEILING,
    PIPELINE_CONTROL,
    PIPELINE_EVAL,
    PIPELINE_ORACLE,
    PIPELINE_STAGE_TIMES,
)

RETRIEVAL_FILE = "retrieval.json"
STUDY_FILE = "adaptation_study.json"
ARM_KINDS = ("adapted", "scratch")
RETRIEVAL_METRICS = ("retrieval.brain_to_image", "retrieval.image_to_brain")
RECON_METRICS = (
    "pixcorr",
    "ssim",
    "lite0_early.two_way",
    "lite0_late.two_way",
    "lite2_early.two_way",
    "lite2_late.two_way",
    "judge.category_f1",
    "judge.colour_f1",
)
HEADLINE = "retrieval.brain_to_image"  # the targets' retrieval top-1: brain → image, as decoding reads it
PROXY_TARGET = "lite2_late.two_way"
SHARE_TARGET = 0.8  # adapted with one session vs the all-data single-subject model


def budget_name(count: int) -> str:
    """`1s`, `2s`, … for the first N sessions; `all` for all of them."""
    return "all" if count == 0 else f"{count}s"


def arm_name(kind: str, count: int) -> str:
    return f"{kind}-{budget_name(count)}"


def _per_image(root: Path, arm: str, retrieval: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every per-image score of an arm, keyed by metric, in test-image order."""
    columns = {}
    entry = retrieval["arms"].get(arm)
    if entry is not None:
        for metric in RETRIEVAL_METRICS:
            columns[metric] = np.asarray(entry[metric.split(".", 1)[1]], dtype=np.float64)
    metrics_file = root / PIPELINE_EVAL / arm / METRICS_FILE
    if metrics_file.is_file():
        _, recon = read_per_image(metrics_file)
        columns.update({m: v for m, v in recon.items() if m in RECON_METRICS})
    return columns


def study_record(root: str | Path) -> dict[str, Any]:
    """Means, CIs and paired differences of every arm of a finished study folder."""
    root = Path(root)
    cfg = read_json(root / CONFIG, "study config")["config"]["adaptation"]
    retrieval = read_json(root / RETRIEVAL_FILE, "study retrieval")
    budgets = []
    for count in cfg["sessions"]:
        scores = {kind: _per_image(root, arm_name(kind, count), retrieval) for kind in ARM_KINDS}
        entry: dict[str, Any] = {"sessions": count, "name": budget_name(count)}
        for kind in ARM_KINDS:
            entry[kind] = {m: bootstrap_ci(v) for m, v in scores[kind].items()}
        shared = sorted(set(scores["adapted"]) & set(scores["scratch"]))
        entry["adapted_minus_scratch"] = {
            m: paired_difference(scores["adapted"][m], scores["scratch"][m]) for m in shared
        }
        budgets.append(entry)
    references = {}
    for row in (PIPELINE_CEILING, PIPELINE_ORACLE, PIPELINE_CONTROL):
        metrics_file = root / PIPELINE_EVAL / row / METRICS_FILE
        if metrics_file.is_file():
            metrics = read_json(metrics_file, "metrics record")["metrics"]
            references[row] = {m: metrics[m] for m in RECON_METRICS if m in metrics and "mean" in metrics[m]}
    record = {
        "shared_subjects": cfg["shared_subjects"],
        "held_out": cfg["held_out"],
        "protocol": {
            "split": "test (one item per image, repetitions averaged; the same images for every budget)",
            "retrieval": "top-1 among the test images (pools of ≤ 300, 30 draws), projected terminal output vs the "
            "teacher's terminal level; per image, so it is bootstrapped over images",
            "reconstructions": "single shot, through the one shared generator; `mindhier eval recons` metrics",
            "statistics": "mean and bootstrap 95 % CI over test images (10,000 resamples); adapted − scratch paired "
            "on the same images with Wilcoxon p",
            "proxies": "EfficientNet-Lite0/-Lite2 identification: offline proxies (Lite0 is the teacher, Lite2 drives "
            "the simulator's semantic voxels), not the field's networks",
        },
        "budgets": budgets,
        "references": references,
    }
    record["verdict"] = verdict(record)
    return record


def _apart(better: dict[str, Any], worse: dict[str, Any]) -> bool:
    return better["ci95"][0] > worse["ci95"][1]


def verdict(record: dict[str, Any]) -> list[str]:
    """One line per target, saying whether it holds and by how much."""
    budgets = record["budgets"]
    if not budgets:
        return ["no budgets were run"]
    smallest = min((b for b in budgets if b["sessions"] > 0), key=lambda b: b["sessions"], default=budgets[0])
    full = next((b for b in budgets if b["sessions"] == 0), None)
    lines = []
    for metric in (HEADLINE, PROXY_TARGET):
        adapted, scratch = smallest["adapted"].get(metric), smallest["scratch"].get(metric)
        if adapted is None or scratch is None:
            lines.append(f"{metric}: not measured")
            continue
        apart = _apart(adapted, scratch)
        paired = smallest["adapted_minus_scratch"][metric]
        excludes_zero = paired["ci95"][0] > 0
        lines.append(
            f"{metric} with {smallest['name']}: adapted {adapted['mean']:.3f} [{adapted['ci95'][0]:.3f}, "
            f"{adapted['ci95'][1]:.3f}] vs scratch {scratch['mean']:.3f} [{scratch['ci95'][0]:.3f}, "
            f"{scratch['ci95'][1]:.3f}]: {'met (CIs apart)' if apart else 'not met (CIs overlap or reversed)'}; "
            f"paired adapted − scratch {paired['mean']:+.3f} [{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}], "
            f"Wilcoxon p {paired['p_wilcoxon']:.2g}{' (CI above 0)' if excludes_zero else ''}"
        )
    if full is not None and HEADLINE in smallest["adapted"] and HEADLINE in full["scratch"]:
        reference = full["scratch"][HEADLINE]["mean"]
        share = smallest["adapted"][HEADLINE]["mean"] / reference if reference > 0 else float("nan")
        lines.append(
            f"{HEADLINE}: adapted with {smallest['name']} reaches {share:.0%} of the all-data single-subject model "
            f"({reference:.3f}); target ≥ {SHARE_TARGET:.0%}: {'met' if share >= SHARE_TARGET else 'not met'}"
        )
    return lines


def curves_figure(record: dict[str, Any], path: Path) -> None:
    """Metric against sessions, adapted and scratch, with bootstrap CIs (`all` drawn last)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [
        m
        for m in (HEADLINE, "retrieval.image_to_brain", PROXY_TARGET, "pixcorr")
        if any(m in b["adapted"] for b in record["budgets"])
    ]
    if not metrics:
        return
    budgets = record["budgets"]
    x = np.arange(len(budgets))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for kind, colour in (("adapted", "tab:blue"), ("scratch", "tab:orange")):
            entries = [b[kind].get(metric) for b in budgets]
            keep = [i for i, e in enumerate(entries) if e is not None]
            means = np.array([entries[i]["mean"] for i in keep])
            lows = means - np.array([entries[i]["ci95"][0] for i in keep])
            highs = np.array([entries[i]["ci95"][1] for i in keep]) - means
            ax.errorbar(x[keep], means, yerr=[lows, highs], marker="o", capsize=3, color=colour, label=kind)
        ax.set_xticks(x, [b["name"] for b in budgets])
        ax.set_xlabel("sessions of the held-out subject")
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(entry: dict[str, Any] | None, signed: bool = False) -> str:
    if entry is None:
        return "—"
    lo, hi = entry["ci95"]
    fmt = "+.3f" if signed else ".3f"
    p = f" p={entry['p_wilcoxon']:.2g}" if "p_wilcoxon" in entry else ""
    return f"{entry['mean']:{fmt}} <span class=note>[{lo:{fmt}}, {hi:{fmt}}]{p}</span>"


def _table(record: dict[str, Any]) -> str:
    metrics = [m for m in (*RETRIEVAL_METRICS, *RECON_METRICS) if any(m in b["adapted"] for b in record["budgets"])]
    head = (
        "<tr><th>metric</th>"
        + "".join(f"<th>{kind} {html.escape(b['name'])}</th>" for b in record["budgets"] for kind in ARM_KINDS)
        + "".join(f"<th>{html.escape(r)}</th>" for r in record["references"])
        + "</tr>"
    )
    rows = []
    for m in metrics:
        cells = "".join(f"<td>{_cell(b[kind].get(m))}</td>" for b in record["budgets"] for kind in ARM_KINDS)
        cells += "".join(f"<td>{_cell(ref.get(m))}</td>" for ref in record["references"].values())
        rows.append(f"<tr><td>{html.escape(m)}</td>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _paired(record: dict[str, Any]) -> str:
    metrics = [
        m
        for m in (*RETRIEVAL_METRICS, *RECON_METRICS)
        if any(m in b["adapted_minus_scratch"] for b in record["budgets"])
    ]
    head = "<tr><th>adapted − scratch</th>" + "".join(f"<th>{html.escape(b['name'])}</th>" for b in record["budgets"])
    rows = [
        f"<tr><td>{html.escape(m)}</td>"
        + "".join(f"<td>{_cell(b['adapted_minus_scratch'].get(m), signed=True)}</td>" for b in record["budgets"])
        + "</tr>"
        for m in metrics
    ]
    return f"<table>{head}</tr>{''.join(rows)}</table>"


def _stage_table(root: Path) -> str:
    times = root / PIPELINE_STAGE_TIMES
    if not times.is_file():
        return ""
    record = read_json(times, "stage times")
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{entry.get('seconds', 0):.1f}</td>"
        f"<td>{entry.get('peak_rss_mib', '')}</td><td>{'yes' if entry.get('reused') else ''}</td></tr>"
        for name, entry in record.items()
    )
    total = sum(e.get("seconds", 0) for e in record.values())
    return (
        f"<h3>Stages ({total / 60:.1f} min in all)</h3><table><tr><th>stage</th><th>seconds</th>"
        f"<th>peak RSS MiB</th><th>reused</th></tr>{rows}</table>"
    )


def build_adaptation_report(root: str | Path, out: str | Path, overwrite: bool = False) -> tuple[Path, list[str]]:
    """Write `out/index.html`, the curves and `adaptation_study.json` for a finished study; returns the index path and
    the verdict lines."""
    root, out = Path(root), Path(out)
    record = study_record(root)
    with staged_directory(out, overwrite=overwrite) as staging:
        write_json(staging / STUDY_FILE, record)
        curves_figure(record, staging / "adaptation_curves.png")
        figure = "<img src='adaptation_curves.png'>" if (staging / "adaptation_curves.png").is_file() else ""
        verdict_items = "".join(f"<li>{html.escape(line)}</li>" for line in record["verdict"])
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>mindhier adaptation study</title>"
            "<style>body{font-family:sans-serif;margin:20px}table{border-collapse:collapse;font-size:12px}"
            "th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}.note{color:#666;font-size:11px}</style>"
            "</head><body><h1>A new subject from little data</h1>"
            f"<p>Shared model on subjects {html.escape(', '.join(map(str, record['shared_subjects'])))}; held-out "
            f"subject {record['held_out']} adapted with its first sessions, against the same architecture trained "
            "from scratch on the same sessions. Every arm decodes through the same shared generator.</p>"
            f"<h2>Verdict</h2><ul>{verdict_items}</ul>"
            f"<h2>Metric against sessions</h2>{figure}"
            "<h2>Every arm (mean, bootstrap 95 % CI over test images) and the reference rows</h2>"
            f"{_table(record)}<h2>Adapted − scratch, paired on the same images</h2>{_paired(record)}"
            f"{_stage_table(root)}"
            f"<details><summary>protocol</summary><pre>{html.escape(json.dumps(record['protocol'], indent=1))}"
            "</pre></details></body></html>"
        )
        (staging / "index.html").write_text(page)
    return out / "index.html", record["verdict"]
