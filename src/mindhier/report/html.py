"""`mindhier report RUNS... --out DIR`: a static HTML report (opens from disk) of one or more pipeline runs.

A pipeline run folder (what `mindhier demo` writes) holds:

    data/ (or a dataset named in config)   encoder/   tokenizer/   generators/<routing>/
    recons/<name>/   eval/<name>/metrics.json   stage_times.json   config.json

where recons/eval names are the routings run, `shuffled_brain` (the control: brain inputs permuted across
test images) and `tokenizer_ceiling` (the true images through the tokenizer). The report shows, per run:
the metric table with 95 % CIs (methods, control and ceiling as rows), paired differences between the
routings and against the control, ground truth beside every reconstruction, coarse-to-fine strips,
training curves of every stage, and per-stage time and peak memory; with several runs, the spread of the
means across runs. Decoder benchmark records (`mindhier bench decoders --out FILE.json`), when given, add their
speed-quality section after the runs.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mindhier import run_layout
from mindhier.errors import DataError
from mindhier.fileio import read_json, staged_directory, write_json
from mindhier.metrics.recons_eval import HEADLINE_METRICS, METRICS_FILE, RECONS_MANIFEST, compare
from mindhier.report import figures
from mindhier.report.diagnostics import (
    brain_correlation_section,
    condition_use_section,
    consistency_section,
    per_scale_section,
    starts_section,
)
from mindhier.report.routing_study import ORACLE_SUFFIX, routing_study, routing_study_section
from mindhier.report.speed_quality import speed_quality_section, validate_decoders_record
from mindhier.run_layout import (
    PIPELINE_CEILING,
    PIPELINE_CONTROL,
    PIPELINE_DIFFUSION,
    PIPELINE_DIFFUSION_ORACLE,
    PIPELINE_ENCODER,
    PIPELINE_EVAL,
    PIPELINE_GENERATORS,
    PIPELINE_ORACLE,
    PIPELINE_RECONS,
    PIPELINE_STAGE_TIMES,
    PIPELINE_TOKENIZER,
)

ROUTING_STUDY = "routing_study.json"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; color: #222 }
table { border-collapse: collapse; font-size: 13px; margin: 0.6em 0 1.4em }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right }
th:first-child, td:first-child { text-align: left }
.note { color: #666; font-size: 12px }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd }
"""


def _methods(run: Path) -> list[str]:
    """Evaluated reconstruction sets: brain routings first, then oracle rows, the diffusion baseline, the control
    and the ceiling."""
    names = sorted(p.parent.name for p in (run / PIPELINE_EVAL).glob(f"*/{METRICS_FILE}"))
    last = (PIPELINE_ORACLE, PIPELINE_DIFFUSION, PIPELINE_DIFFUSION_ORACLE, PIPELINE_CONTROL, PIPELINE_CEILING)
    brain = [n for n in names if n not in last and not n.endswith(ORACLE_SUFFIX)]
    oracle = [n for n in names if n.endswith(ORACLE_SUFFIX)]
    return brain + oracle + [n for n in last if n in names]


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "—"
    if entry.get("kind") == "absent":
        return "absent"
    lo, hi = entry["ci95"]
    return f"{entry['mean']:.3f} <span class=note>[{lo:.3f}, {hi:.3f}]</span>"


def metric_table(run: Path, methods: list[str]) -> tuple[str, list[str]]:
    records = {m: read_json(run / PIPELINE_EVAL / m / METRICS_FILE, "metrics record") for m in methods}
    names = [n for n in HEADLINE_METRICS if any(n in r["metrics"] for r in records.values())]
    names += sorted({n for r in records.values() for n in r["metrics"]} - set(names))
    head = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in methods) + "<th>kind</th></tr>"
    rows = []
    for name in names:
        kinds = {
            r["metrics"].get(name, {}).get("note") or r["metrics"].get(name, {}).get("kind", "")
            for r in records.values()
        }
        direction = next(
            (r["metrics"][name].get("higher_is_better") for r in records.values() if name in r["metrics"]), None
        )
        arrow = {True: " ↑", False: " ↓"}.get(direction, "")
        cells = "".join(f"<td>{_cell(records[m]['metrics'].get(name))}</td>" for m in methods)
        kind = html.escape(", ".join(sorted(kinds - {""})))
        rows.append(f"<tr><td>{html.escape(name)}{arrow}</td>{cells}<td>{kind}</td></tr>")
    judge_note = ""
    for record in records.values():
        if record.get("judge"):
            ceiling = ", ".join(f"{k} {v:.3f}" for k, v in record["judge"]["on_true_images"].items())
            judge_note = f"<p class=note>The judge on the true test images: {html.escape(ceiling)}.</p>"
            break
    return f"<table>{head}{''.join(rows)}</table>{judge_note}", names


def paired_table(run: Path, reference: str, others: list[str], names: list[str]) -> str:
    files = [run / PIPELINE_EVAL / m / METRICS_FILE for m in [reference, *others]]
    table = compare(files, n_resamples=10_000, seed=0)
    head = (
        "<tr><th>metric</th>"
        + "".join(f"<th>{html.escape(o)} − {html.escape(reference)}</th>" for o in others)
        + "</tr>"
    )
    rows = []
    for name in names:
        entry = table["metrics"].get(name)
        if entry is None:
            continue
        cells = []
        for diff in entry["paired_vs_first"]:
            lo, hi = diff["ci95"]
            note = f"[{lo:+.4f}, {hi:+.4f}] p={diff['p_wilcoxon']:.2g}"
            cells.append(f"<td>{diff['mean']:+.4f} <span class=note>{note}</span></td>")
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _shared(run: Path, name: str) -> Path:
    """A file or folder of this run, or of the run root above it (shared across seed runs)."""
    return run / name if (run / name).exists() else run.parent / name


def stage_table(run: Path) -> str:
    path = _shared(run, PIPELINE_STAGE_TIMES)
    if not path.is_file():
        return "<p class=note>no stage times recorded</p>"
    stages = read_json(path, "stage times")
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{v.get('seconds', 0):.1f}</td>"
        f"<td>{v.get('peak_rss_mib', float('nan')):.0f}</td><td>{'reused' if v.get('reused') else 'computed'}</td></tr>"
        for name, v in stages.items()
    )
    return f"<table><tr><th>stage</th><th>seconds</th><th>peak RSS (MiB)</th><th></th></tr>{rows}</table>"


SPLIT_NAMES = {
    "test": "test (MindEye2's new_test: every shared image the subject saw)",
    "test_old": "test_old (the older 982-image split of MindEye1 and earlier papers)",
    "val": "val (held-out training images, not a test split)",
}


def protocol_line(protocol: dict) -> str:
    """Which split, subject, images, samples and averaging the numbers below are from, in one sentence."""
    split = SPLIT_NAMES.get(protocol.get("split", ""), str(protocol.get("split")))
    samples = protocol.get("samples", 1)
    shots = "single shot" if samples == 1 else f"best of {samples} by {protocol.get('selection', '?')}"
    averaging = protocol.get("averaging", "repetition averaging not recorded")
    return (
        f"Protocol: subject {protocol.get('subject')}, split {split}, {protocol.get('n_images')} images; {shots}; "
        f"{averaging}."
    )


def run_section(run: Path, out: Path, tag: str) -> tuple[str, dict[str, dict[str, float]]]:
    from mindhier.data.nsd import open_dataset

    methods = _methods(run)
    if not methods:
        return f"<h2>{html.escape(str(run))}</h2><p>no evaluations found under {PIPELINE_EVAL}/</p>", {}
    table, names = metric_table(run, methods)
    records = {m: read_json(run / PIPELINE_EVAL / m / METRICS_FILE, "metrics record") for m in methods}
    parts = [
        f"<h2>{html.escape(str(run))}</h2>",
        f"<p class=note>{html.escape(protocol_line(records[methods[0]]['protocol']))}</p>",
        "<h3>Metrics (mean, bootstrap 95 % CI over test images)</h3>",
        table,
    ]
    parts.append(expectations(records, methods))
    references = (PIPELINE_CONTROL, PIPELINE_CEILING, PIPELINE_ORACLE, PIPELINE_DIFFUSION_ORACLE)
    routings = [m for m in methods if m not in references]
    if len(routings) > 1:
        parts += [
            f"<h3>Guidance modes, paired (against {html.escape(routings[0])})</h3>",
            paired_table(run, routings[0], routings[1:], names),
        ]
    if PIPELINE_CONTROL in methods and routings:
        parts += [
            "<h3>Against the shuffled-brain control (paired)</h3>",
            paired_table(run, PIPELINE_CONTROL, routings, names),
        ]

    parts += [
        per_scale_section(records, out, tag),
        condition_use_section(records),
        consistency_section(records, out, tag),
        brain_correlation_section(records),
        starts_section(run, _shared),
    ]
    manifest = read_json(run / PIPELINE_RECONS / methods[0] / RECONS_MANIFEST, "reconstruction manifest")
    record = read_json(run / PIPELINE_EVAL / methods[0] / METRICS_FILE, "metrics record")
    protocol = json.dumps(record["protocol"], indent=1)
    parts.append(f"<details><summary>protocol</summary><pre>{html.escape(protocol)}</pre></details>")
    indices = np.asarray(manifest["stimulus_indices"])
    with open_dataset(record["data"], subjects=[int(manifest["subject"])]) as dataset:
        split = dataset.split(int(manifest["subject"]), manifest["split"])
        truths = split.images()
    columns = {m: run / PIPELINE_RECONS / m for m in methods if (run / PIPELINE_RECONS / m).is_dir()}
    grid = out / f"{tag}_reconstructions.png"
    figures.comparison_grid(truths, columns, indices, grid)
    parts += [
        f"<h3>Ground truth (top) and {html.escape(', '.join(columns))} (below), every test image</h3>",
        f"<img src='{grid.name}'>",
    ]
    for m in routings:
        strips = run / PIPELINE_RECONS / m / "strips"
        if strips.is_dir():
            figure = out / f"{tag}_strips_{m}.png"
            figures.strips_figure(strips, indices, figure)
            parts += [
                f"<h3>Coarse to fine: {html.escape(m)} (image after each scale)</h3>",
                f"<img src='{figure.name}'>",
            ]
    logs = {
        "encoder": _shared(run, PIPELINE_ENCODER) / run_layout.LOG,
        "tokenizer": _shared(run, PIPELINE_TOKENIZER) / run_layout.LOG,
    }
    logs.update({f"generator {p.name}": p / run_layout.LOG for p in sorted((run / PIPELINE_GENERATORS).glob("*"))})
    if (run / PIPELINE_DIFFUSION / run_layout.LOG).is_file():
        logs["diffusion baseline"] = run / PIPELINE_DIFFUSION / run_layout.LOG
    curves = out / f"{tag}_training.png"
    figures.training_curves(logs, curves)
    if curves.exists():
        parts += ["<h3>Training curves</h3>", f"<img src='{curves.name}'>"]
    parts += ["<h3>Per-stage time and peak memory</h3>", stage_table(run)]
    means = {
        m: {
            n: e["mean"]
            for n, e in read_json(run / PIPELINE_EVAL / m / METRICS_FILE, "m")["metrics"].items()
            if "mean" in e
        }
        for m in methods
    }
    return "\n".join(parts), means


def across_runs(all_means: list[dict[str, dict[str, float]]]) -> str:
    methods = sorted({m for means in all_means for m in means})
    names = [n for n in HEADLINE_METRICS if any(n in means.get(m, {}) for means in all_means for m in methods)]
    head = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in methods) + "</tr>"
    rows = []
    for name in names:
        cells = []
        for m in methods:
            values = [means[m][name] for means in all_means if name in means.get(m, {})]
            cells.append(f"<td>{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}</td>")
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return f"<h2>Across {len(all_means)} runs (mean ± sd of the per-run means)</h2><table>{head}{''.join(rows)}</table>"


def expectations(records: dict[str, dict], methods: list[str]) -> str:
    """The numbers a reader checks first: brain against oracle, control and ceiling on the judge and PixCorr."""

    def mean(row: str, metric: str) -> float | None:
        entry = records.get(row, {}).get("metrics", {}).get(metric)
        return None if not entry or "mean" not in entry else entry["mean"]

    references = (PIPELINE_ORACLE, PIPELINE_DIFFUSION_ORACLE, PIPELINE_CONTROL, PIPELINE_CEILING)
    brain = next((m for m in methods if m not in references), None)
    if brain is None:
        return ""
    facts = []
    for metric in ("judge.category_f1", "judge.colour_f1", "pixcorr"):
        values = {row: mean(row, metric) for row in (brain, PIPELINE_ORACLE, PIPELINE_CONTROL, PIPELINE_CEILING)}
        if values[brain] is None:
            continue
        shown = ", ".join(f"{row} {v:.3f}" for row, v in values.items() if v is not None)
        ratio = ""
        if values[PIPELINE_ORACLE]:
            ratio = f" — {brain} reaches {values[brain] / values[PIPELINE_ORACLE]:.0%} of the oracle"
        facts.append(f"<li>{html.escape(metric)}: {html.escape(shown)}{html.escape(ratio)}</li>")
    return (
        "<p class=note>Reading the rows: the tokenizer ceiling is the best any reconstruction can be here; the "
        "oracle is the generator given the test images' own teacher features (a perfect encoder); the shuffled "
        "control is what the generator makes of another image's brain data. Brain reconstructions sit between the "
        "control and the oracle:</p>"
        f"<ul class=note>{''.join(facts)}</ul>"
    )


def build_report(
    runs: list[str | Path],
    out: str | Path,
    overwrite: bool = False,
    bench_records: Sequence[Mapping] | None = None,
) -> Path:
    """Write `out/index.html` and its figures (a non-empty `out` is replaced only with `overwrite`, once the new
    report is complete); returns the index path. Each of `bench_records` (decoders benchmark records, as
    `mindhier bench decoders --out` writes them) adds a speed-quality section after the runs."""
    out = Path(out)
    bench_records = [
        validate_decoders_record(record, f"benchmark record {k + 1}") for k, record in enumerate(bench_records or ())
    ]
    for run in runs:
        if not (Path(run) / run_layout.PIPELINE_EVAL).is_dir():
            raise DataError(
                f"{run} is not a pipeline run folder (no {run_layout.PIPELINE_EVAL}/); pass folders that `mindhier "
                "demo` wrote"
            )
    with staged_directory(out, overwrite=overwrite) as staging:
        sections, all_means = [], []
        for k, run in enumerate(runs):
            section, means = run_section(Path(run), staging, f"run{k}")
            sections.append(section)
            if means:
                all_means.append(means)
        if len(all_means) > 1:
            sections.insert(0, across_runs(all_means))
            routings = tuple(sorted({m.removesuffix(ORACLE_SUFFIX) for means in all_means for m in means}))
            study = routing_study(runs, routings)
            write_json(staging / ROUTING_STUDY, study)
            sections.insert(0, routing_study_section(study))
        sections += [speed_quality_section(record) for record in bench_records]
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>mindhier report</title>"
            f"<style>{STYLE}</style></head><body><h1>mindhier report</h1>"
            "<p class=note>Single-shot reconstructions unless the protocol says otherwise; any selection uses only "
            "brain-derived signals. Proxy metrics are offline stand-ins, labelled with what they are coupled to; "
            "networks reported as absent were not available on this machine.</p>"
            + "\n".join(sections)
            + "</body></html>"
        )
        (staging / "index.html").write_text(page)
    return out / "index.html"
