"""Render the README's measured tables from the result files they come from, or check that they agree.

    python scripts/readme_tables.py           # rewrite every generated block of README.md and docs/reproduce-nsd.md
    python scripts/readme_tables.py --check   # exit 1 (naming the block) when a block differs from its file

A generated block is delimited in those documents by

    <!-- results: FILE VIEW -->
    ...
    <!-- end results -->

where FILE is relative to the repository (a result file under `results/`, written by a command's `--record`, or a
prior's model card under `src/mindhier/priors/`) and VIEW names the renderer below. Everything between the two
markers is generated: edit the file, or re-measure, never the block. The test suite runs `--check`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = (README, ROOT / "docs" / "reproduce-nsd.md")  # every document with generated blocks
BLOCK = re.compile(r"(<!-- results: (\S+) (\S+) -->\n)(.*?)(<!-- end results -->)", flags=re.S)


# ---------------------------------------------------------------- formatting


def num(value: float | None, digits: int = 3) -> str:
    """A figure as printed: fixed digits, a real minus sign; "–" when absent."""
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    return text.replace("-", "−")


def signed(value: float, digits: int = 3) -> str:
    return ("+" if value >= 0 else "") + num(value, digits)


def score(entry: dict[str, Any] | None, with_ci: bool = False) -> str:
    if entry is None:
        return "–"
    text = num(entry["mean"])
    if with_ci:
        low, high = entry["ci95"]
        text += f" [{num(low, 2)}, {num(high, 2)}]"
    return text


def minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"


def provenance_line(record: dict[str, Any]) -> str:
    """Which command, code, machine and date produced a record — the line under every generated table."""
    machine = record["machine"]
    where = f"{machine.get('cpu_count')} cores ({machine.get('processor')}), {machine.get('torch_threads')} threads"
    if machine.get("cuda_device"):
        where = machine["cuda_device"]
    torch_version = machine.get("torch", "?")
    source = (
        f"transcribed: {record['note']}"
        if record["source"] == "transcribed"
        else f"`{record['command']}`, wall {minutes(record['wall_seconds'])}"
        + (f", peak RSS {record['peak_rss_gib']:.1f} GiB" if record.get("peak_rss_gib") else "")
    )
    commit = record["commit"][:7] + (" (with uncommitted changes)" if record["commit"].endswith("-dirty") else "")
    return f"*Source: {source}; commit {commit}, {record['date'][:10]}, {where}, torch {torch_version}.*"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- views

DEMO_ROW_NAMES = {
    "tokenizer_ceiling": "tokenizer ceiling",
    "teacher_oracle": "teacher-feature oracle",
    "coarse_to_fine": "coarse-to-fine, brain",
    "static_terminal": "static terminal, brain",
    "low_level_start": "coarse-to-fine, brain, low-level start",
    "fine_to_coarse": "fine-to-coarse, brain",
    "all_levels": "all levels, brain",
    "diffusion": "diffusion baseline, brain",
    "diffusion_oracle": "diffusion baseline, teacher-feature oracle",
    "shuffled_brain": "shuffled brain (control)",
}
STAGE_GROUPS = (  # (label, stage-name prefixes) in pipeline order
    ("simulate", ("simulate",)),
    ("teacher features", ("teacher features",)),
    ("encoder", ("encoder",)),
    ("tokenizer and tokens", ("tokenizer", "stimulus tokens")),
    ("judge", ("judge",)),
    ("generators", ("generator", "diffusion")),
    ("reconstructions", ("reconstruct",)),
    ("evaluations", ("evaluate",)),
    ("report", ("report",)),
)


def demo_rows(record: dict[str, Any]) -> str:
    numbers = record["numbers"]
    order = [name for name in DEMO_ROW_NAMES if name in numbers["rows"]]
    order += sorted(set(numbers["rows"]) - set(order))
    rows = []
    for name in order:
        row = numbers["rows"][name]
        per_scale = row.get("pixcorr_after_scale")
        rows.append(
            [
                DEMO_ROW_NAMES.get(name, name),
                score(row["pixcorr"], with_ci=True),
                score(row["ssim"]),
                f"{score(row['lite0_early.two_way'])} / {score(row['lite0_late.two_way'])}",
                f"{score(row['lite2_early.two_way'])} / {score(row['lite2_late.two_way'])}",
                score(row["judge.colour_f1"], with_ci=True),
                score(row["judge.category_f1"], with_ci=True),
                f"{num(per_scale[1])} → {num(per_scale[-1])}" if per_scale and len(per_scale) > 1 else "–",
            ]
        )
    header = [
        "row",
        "PixCorr [95 % CI]",
        "SSIM",
        "Lite0 early / late 2-way (proxy)",
        "Lite2 early / late 2-way (proxy)",
        "judge colour F1 [CI]",
        "judge category F1 [CI]",
        "PixCorr after scale 2 → last",
    ]
    return table(header, rows) + "\n\n" + provenance_line(record)


def demo_summary(record: dict[str, Any]) -> str:
    numbers = record["numbers"]
    stages = numbers["stage_seconds"]
    parts = []
    for label, prefixes in STAGE_GROUPS:
        seconds = sum(v for k, v in stages.items() if k.startswith(prefixes))
        if seconds:
            parts.append(f"{label} {seconds / 60:.1f}")
    retrieval = numbers["encoder_retrieval"]
    truth = numbers["judge_on_true_images"] or {}
    protocol = numbers["protocol"]
    return (
        f"Subject {protocol['subject']}, split `{protocol['split']}`, {protocol['n_images']} images, single shot. "
        f"Minutes per stage: {', '.join(parts)}. "
        f"The encoder retrieves the right image among {retrieval['pool']} with top-1 "
        f"{num(retrieval['brain_to_image_top1'])} (chance {num(retrieval['chance'])}). "
        f"The judge scores the true images colour F1 {num(truth.get('colour_f1'))}, "
        f"category F1 {num(truth.get('category_f1'))}."
    )


def sampler_table(record: dict[str, Any]) -> str:
    rows = []
    for batch, per_mode in record["numbers"]["batches"].items():
        for mode, row in per_mode.items():
            rows.append(
                [
                    batch,
                    mode,
                    num(row["sampling_ms_per_image"], 1),
                    num(row["teacher_forced_ms_per_image"], 1),
                    num(row["ratio"], 2),
                ]
            )
    header = ["batch", "mode", "sampling, ms/image", "teacher-forced pass + VQ decode, ms/image", "ratio"]
    return table(header, rows) + "\n\n" + provenance_line(record)


def operator_name(name: str) -> str:
    """A profiler entry, readable: a compiled graph's call (named by its hash) becomes what it is."""
    if name.startswith("## Call CompiledFxGraph"):
        return "compiled graph (fused kernels)"
    return name


def decoders_table(record: dict[str, Any]) -> str:
    numbers = record["numbers"]
    rows = []
    for point in numbers["points"]:
        ms, metrics = point["ms_per_image"], point["metrics"]
        rows.append(
            [
                point["option"],
                num(ms.get("1"), 1),
                num(ms.get(max(ms, key=int)), 1),
                num(metrics.get("pixcorr")),
                num(metrics.get("ssim")),
                num(metrics.get("lite0_late.two_way")),
                num(metrics.get("lite2_early.two_way")),
            ]
        )
    largest = max(numbers["points"][0]["ms_per_image"], key=int)
    header = [
        "decoder",
        "ms/image, batch 1",
        f"ms/image, batch {largest}",
        "PixCorr",
        "SSIM",
        "Lite0-late 2-way (proxy)",
        "Lite2-early 2-way (proxy)",
    ]
    batches = list(next(iter(numbers["ratios"].values())))
    ratios = table(
        ["time per image, DDIM / scale-wise", *[f"batch {b}" for b in batches]],
        [[name, *[f"×{num(per_batch[b], 2)}" for b in batches]] for name, per_batch in numbers["ratios"].items()],
    )
    metric_names = {"pixcorr": "PixCorr", "ssim": "SSIM", "lite0_late.two_way": "Lite0-late 2-way (proxy)"}
    metric_names["lite2_early.two_way"] = "Lite2-early 2-way (proxy)"
    all_names = metric_names | {
        "lite0_early.two_way": "Lite0-early 2-way (proxy)",
        "lite2_late.two_way": "Lite2-late 2-way (proxy)",
        "judge.category_f1": "judge category F1",
        "judge.colour_f1": "judge colour F1",
    }
    curve = table(
        ["DDIM steps", *metric_names.values()],
        [
            [steps, *[num(scores.get(m)) for m in metric_names]]
            for steps, scores in sorted(numbers["ddim_curve"].items(), key=lambda item: int(item[0]))
        ],
    )
    matched_rows = []
    for metric, point in numbers["matched_quality"].items():
        steps = f"{point['ddim_steps']}" if point["reached"] else f"{point['ddim_steps']} (best; never reaches it)"
        ratio_cells = [f"×{num(point['ratio'][b], 2)}" for b in batches]
        matched_rows.append(
            [all_names.get(metric, metric), num(point["scale_wise"]), steps, num(point["ddim"]), *ratio_cells]
        )
    matched = table(
        ["metric", "scale-wise", "fewest DDIM steps reaching it", "DDIM score there"]
        + [f"time ratio, batch {b}" for b in batches],
        matched_rows,
    )
    profile_rows = [
        [
            name,
            num(profile["profiled_ms"], 2),
            "; ".join(f"{operator_name(op)} {num(ms, 2)} ms ({share:.0%})" for op, ms, share in profile["top"][:4]),
            f"{num(profile['floor_ms'], 2)} ({num(profile['gflop'], 3)} GFLOP at {profile['gemm_gflops']:.0f} GFLOP/s)",
        ]
        for name, profile in numbers["batch_one_profile"].items()
    ]
    profile = table(["batch 1", "profiled ms/pass", "largest self times", "arithmetic floor, ms"], profile_rows)
    sw, df = numbers["scale_wise"], numbers["diffusion"]
    models = (
        f"scale-wise generator {sw['parameters']:,} parameters, start {sw.get('init', '?')}, "
        f"{sw['training_steps']} fine-tuning steps; diffusion baseline {df['parameters']:,} parameters, start "
        f"{df.get('init', '?')}, {df['steps']} steps ({df.get('steps_rule', '')})"
    )
    return (
        table(header, rows)
        + f"\n\n{ratios}\n\nSpeed at matched quality ({numbers['matched_mode']}, both decoders timed together):\n\n"
        + f"{matched}\n\nThe baseline's quality against DDIM steps:\n\n{curve}\n\n"
        + "Where batch 1's time goes (compiled, torch.profiler; floor: counted FLOPs at this CPU's GEMM rate):\n\n"
        + f"{profile}\n\nModels: {models}.\n\n"
        + provenance_line(record)
    )


def routing_table(record: dict[str, Any]) -> str:
    numbers = record["numbers"].get("routing_study", record["numbers"])  # a demo-long record, or a transcribed one
    others = numbers["compared_with"]
    rows = []
    for arm, values in numbers["arms"].items():
        cells = [arm, num(values["coarse_to_fine_pixcorr"])]
        for other in others:
            d = values["differences"][other]
            cells.append(f"{signed(d['mean'])} [{signed(d['ci95'][0])}, {signed(d['ci95'][1])}] p={d['p']:g}")
        rows.append(cells)
    header = ["arm", "coarse_to_fine PixCorr", *[f"c2f − {o}" for o in others]]
    return table(header, rows) + "\n\n" + provenance_line(record)


def adaptation_table(record: dict[str, Any]) -> str:
    numbers = record["numbers"]
    rows = []
    for row in numbers["rows"]:
        cells = [str(row["sessions"]), row["arm"]]
        for key in ("brain_to_image_top1", "image_to_brain_top1", "lite2_late.two_way", "pixcorr"):
            entry = row[key]
            cells.append(f"{num(entry['mean'])} [{num(entry['ci95'][0])}, {num(entry['ci95'][1])}]")
        rows.append(cells)
    header = [
        "subject's sessions",
        "arm",
        "retrieval top-1 brain→image",
        "image→brain",
        "Lite2-late 2-way (proxy)",
        "PixCorr",
    ]
    refs = "; ".join(
        f"{name} Lite2-late {num(v['lite2_late.two_way'])}, PixCorr {num(v['pixcorr'])}"
        for name, v in numbers["reference_rows"].items()
    )
    return table(header, rows) + f"\n\nReference rows: {refs}.\n\n" + provenance_line(record)


PRECISION = {"float16": "fp16", "float32": "fp32", "bfloat16": "bf16"}


def priors_table(cards: list[dict[str, Any]]) -> str:
    rows = []
    for card in cards:
        metrics = card["metrics"]
        if card["kind"] == "tokenizer":
            result = (
                f"held-out stream PixCorr {num(metrics['val_pixcorr'])}, SSIM {num(metrics['val_ssim'])}, "
                f"codebook use {metrics['codebook_usage'] * 100:.0f} %"
            )
        elif card["kind"] == "diffusion":
            result = (
                f"held-out stream val loss {num(metrics['best_val'])} (noise-prediction MSE, teacher-conditioned; "
                f"{card['inputs']['budget']['steps_rule']})"
            )
        else:
            result = f"held-out stream val loss {num(metrics['best_val'])} (teacher-conditioned)"
        batch = card["config"][f"train_{card['kind']}"]["batch_size"]
        rows.append(
            [
                f"{card['kind']} ({card['parameters'] / 1e6:.2f} M, {PRECISION.get(card['dtype'], card['dtype'])})",
                f"`{card['command']}`",
                f"{card['steps']:,} × {batch}",
                f"{minutes(card['wall_seconds'])} ({card['threads']} thread{'s' if card['threads'] > 1 else ''})",
                result,
            ]
        )
    return table(["prior", "command", "steps", "wall time", "result"], rows)


def prior_ablation_table(records: list[dict[str, Any]]) -> str:
    """One row per evaluated generator prior (a folder of `pretrain generator --evaluate --record` files): the
    levers, held-out loss, condition use over shuffled per scale, and the stream oracle's scores per routing."""
    rows, direct, sources = [], None, []
    for record in records:
        numbers = record["numbers"]
        trained, oracle = numbers["trained"], numbers["oracle"]
        use = " / ".join(signed(u["mean"], 2) for u in numbers["condition_use"]["over_shuffled"])
        sampler = oracle["sampler"]
        sampling = f"T {sampler['temperature']:g}, cfg {sampler['cfg_scale']:g}" + (
            f", top-k {sampler['top_k']}" if sampler["top_k"] else ""
        )
        c2f = oracle["rows"]["coarse_to_fine"]
        best = max(
            (r for r in oracle["rows"] if r != "tokenizer ceiling"), key=lambda r: oracle["rows"][r]["pixcorr"]["mean"]
        )
        rows.append(
            [
                record["variant"],
                f"{trained['steps']:,} × {trained['batch_size']} on {trained['images']:,}",
                f"{trained['width']}×{trained['depth']}, positions {trained['context_positions']}, "
                f"maps {trained['context_maps']}",
                sampling,
                num(numbers["best_val_loss"]),
                use,
                score(c2f["pixcorr"], True),
                score(c2f.get("colour_f1")),
                score(c2f.get("category_f1")),
                f"{best.replace('_', ' ')} {num(oracle['rows'][best]['pixcorr']['mean'])}",
            ]
        )
        direct = direct or numbers.get("direct_decoder")
        sources.append(f"{record['variant']}: " + provenance_line(record).strip("*"))
    header = [
        "variant",
        "steps × batch on images",
        "width × depth, context",
        "oracle sampler",
        "val NLL",
        "condition use over shuffled, scales 1–6 (nats/token)",
        "oracle PixCorr (c2f)",
        "colour F1",
        "category F1",
        "best routing PixCorr",
    ]
    text = table(header, rows)
    if direct is not None:
        d = direct["scores"]
        text += (
            f"\n\nWhat the condition holds (direct decoder, {direct['images']}): PixCorr {score(d['pixcorr'], True)}"
            f", SSIM {score(d['ssim'])}, colour F1 {score(d.get('colour_f1'))}, category F1 "
            f"{score(d.get('category_f1'))}."
        )
    ceiling = records[0]["numbers"]["oracle"]["rows"]["tokenizer ceiling"] if records else None
    if ceiling is not None:
        text += f" Tokenizer ceiling on the same images: PixCorr {score(ceiling['pixcorr'])}."
    return text + "\n\n" + "\n".join(f"*{line}*" for line in sources)


def plan_table(record: dict[str, Any]) -> str:
    numbers = record["numbers"]
    strategies = numbers["strategies"]
    rows = []
    for stage in numbers["stages"]:
        rows.append([f"{stage['name']} ({stage['parameters']})", *[stage["fits"][s] for s in strategies]])
    header = [f"stage ({numbers['gpus']} × {numbers['gpu_memory_gib']:g} GiB)", *strategies]
    hours = "; ".join(
        f"{s['name']} {s['expected_hours']:.1f} h ({s['bound']}-bound)"
        if "bound" in s
        else f"{s['name']} {s['expected_hours']:.1f} h"
        for s in numbers["stages"]
    )
    reading = f" or reading at {numbers['read_gbps']:g} GB/s, whichever binds" if numbers.get("read_gbps") else ""
    return (
        table(header, rows)
        + f"\n\nExpected hours at {numbers['gpus']} × {numbers['gpu_tflops']:g} TFLOP/s and "
        + f"{numbers['mfu'] * 100:g} % MFU{reading} (an estimate from counted FLOPs and bytes, never a measurement): "
        + f"{hours}.\n\n"
        + provenance_line(record)
    )


def plan_stages(record: dict[str, Any]) -> str:
    """docs/reproduce-nsd.md: each training stage as the preset trains it — memory, hours, what binds, RAM."""
    numbers = record["numbers"]
    rows = []
    for stage in numbers["stages"]:
        chosen = stage["trained_with"]
        peak = f"{chosen['peak_gib']:g} GiB" if chosen["peak_gib"] is not None else "does not fit"
        strategy = chosen["strategy"].upper().replace("FSDP", "FSDP2") + (
            ", checkpointing" if chosen["checkpointing"] else ""
        )
        rows.append(
            [
                f"train {stage['name']} ({stage['parameters']})",
                strategy,
                f"{chosen['global_batch']} ({chosen['micro_batch']} per GPU)",
                f"{stage['steps']:,}",
                peak,
                f"{stage['compute_hours']:.2f}"
                + (f" (teacher {stage['teacher_pflop']:g} PFLOP)" if stage["teacher_pflop"] else ""),
                f"{stage['read_tb']:g} TB, {stage['read_hours']:.2f} h",
                f"{max(stage['compute_hours'], stage['read_hours']):.2f}, {stage['bound']}",
                f"{stage['epoch_gb']:g} GB",
            ]
        )
    header = [
        f"step ({numbers['gpus']} × {numbers['gpu_memory_gib']:g} GiB)",
        "strategy",
        "global batch",
        "steps",
        "peak memory per GPU",
        "compute hours",
        f"read at {numbers['read_gbps']:g} GB/s",
        "hours, bound by",
        "RAM for one epoch's reads",
    ]
    t = numbers["teacher"]
    mode = "on the fly, in every encoder step" if t["on_the_fly"] else "from the feature cache"
    return (
        table(header, rows)
        + f"\n\nTeacher {t['name']} ({mode}): {t['parameters']} parameters run, {t['gflop_per_image']:g} GFLOP per "
        + f"image; a cache would hold {t['cache_mb_per_image']:g} MB per image, a stimulus is {t['image_mb']:g} MB.\n\n"
        + provenance_line(record)
    )


def plan_disk(record: dict[str, Any]) -> str:
    """docs/reproduce-nsd.md: the disk each step of the recipe takes."""
    numbers = record["numbers"]
    rows = [[d["step"], d["per"], f"{d['gb']:g}", d["what"]] for d in numbers["disk"]]
    rows.append(
        [
            "total",
            f"{numbers['subjects']} subjects, both test splits",
            f"{numbers['disk_total_gb']:g}",
            "optional rows left out",
        ]
    )
    return table(["step", "per", "GB", "what"], rows) + "\n\n" + provenance_line(record)


REALTIME_METRICS = {
    "retrieval_top1": "retrieval top-1",
    "pixcorr": "PixCorr",
    "ssim": "SSIM",
    "lite0_late.two_way": "Lite0 late two-way (proxy, teacher-coupled)",
    "lite2_late.two_way": "Lite2 late two-way (proxy, simulator-coupled)",
}


def realtime_table(record: dict[str, Any]) -> str:
    """README: `bench realtime` — latency per replay speed, the betas' agreement, decoding real-time vs offline."""
    numbers = record["numbers"]
    tr = numbers["tr_s"]
    rows = []
    for speed, row in numbers["latency"].items():
        parts = row["median_parts_s"]
        rows.append(
            [
                speed,
                f"{row['median_s'] * 1e3:.0f}",
                f"{row['p99_s'] * 1e3:.0f}",
                f"{row['max_s'] * 1e3:.0f}",
                f"{row['share_within_tr']:.0%}",
                " / ".join(f"{parts[k] * 1e3:.0f}" for k in ("motion_correction", "beta", "decode", "write")),
            ]
        )
    latency = table(
        [
            "replay",
            "median, ms",
            "p99, ms",
            "max, ms",
            f"within one TR ({tr * 1e3:.0f} ms)",
            "median parts, ms: motion correction / beta / decode / write",
        ],
        rows,
    )
    betas = numbers["betas"]
    agreement = table(
        ["betas", "median r, visual ROIs (V1–LO)", "median r, V1–V3"],
        [
            [label, num(betas[key]["median_visual"]), num(betas[key]["median_v1_v3"])]
            for key, label in (
                ("realtime_vs_offline", "real-time vs offline"),
                ("offline_vs_truth", "offline vs the simulator's"),
                ("realtime_vs_truth", "real-time vs the simulator's"),
            )
        ],
    )
    decoding_rows = []
    for key, label in REALTIME_METRICS.items():
        entry = numbers["decoding"].get(key)
        if entry is None:
            continue
        difference = entry["difference"]
        extra = f" (ratio {entry['ratio']:.2f}, chance {entry['chance']:.3f})" if "ratio" in entry else ""
        decoding_rows.append(
            [
                label,
                score(entry["realtime"], with_ci=True),
                score(entry["offline"], with_ci=True),
                f"{signed(difference['mean'])} [{signed(difference['ci95'][0])}, {signed(difference['ci95'][1])}], "
                f"p {difference['p_bootstrap']:.2f}{extra}",
            ]
        )
    decoding = table(
        ["metric (same trials, same seeds)", "real-time betas", "offline betas", "difference"], decoding_rows
    )
    windows = table(
        [
            "decoded once this much after onset",
            "retrieval top-1, real-time",
            "÷ offline",
            "betas r vs offline (visual)",
            "p99 latency, max speed, ms",
        ],
        [
            [
                f"{float(w):g} s" + (" (default)" if float(w) == numbers["window_s"] else ""),
                num(row["retrieval_top1"]),
                num(row["ratio_to_offline"], 2),
                num(row["betas_vs_offline_median_visual"]),
                f"{row['latency_p99_s_max_speed'] * 1e3:.0f}",
            ]
            for w, row in sorted(numbers["windows"].items(), key=lambda item: float(item[0]))
        ],
    )
    caption = (
        f"{numbers['run']}: {numbers['trials']} trials, TR {tr:g} s, each decoded once the volume "
        f"{numbers['window_s']:g} s after its onset is in; latency from the arrival of that volume to the image on "
        "disk."
    )
    return "\n\n".join([caption, latency, agreement, decoding, windows, provenance_line(record)])


VIEWS: dict[str, Callable[[Any], str]] = {
    "demo-rows": demo_rows,
    "demo-summary": demo_summary,
    "sampler-table": sampler_table,
    "realtime-table": realtime_table,
    "decoders-table": decoders_table,
    "routing-table": routing_table,
    "adaptation-table": adaptation_table,
    "priors-table": priors_table,
    "plan-table": plan_table,
    "plan-stages": plan_stages,
    "plan-disk": plan_disk,
    "prior-ablation-table": prior_ablation_table,
}


# ---------------------------------------------------------------- the blocks


def load_source(name: str, root: Path = ROOT) -> Any:
    """A result file (checked against its schema), or every model card of a priors folder."""
    path = root / name
    sys.path.insert(0, str(root / "src"))
    from mindhier.result_files import read_result

    if path.is_dir() and path.is_relative_to(root / "results"):  # a folder of result files: one row each, by name
        return [{**read_result(p), "variant": p.stem} for p in sorted(path.glob("*.json"))]
    if path.is_dir():
        return [json.loads(p.read_text()) for p in sorted(path.glob("*.json"), reverse=True)]  # tokenizer, generator
    return read_result(path)


def render_readme(text: str, root: Path = ROOT) -> str:
    """The README with every generated block rendered from its file."""

    def replace(match: re.Match) -> str:
        opening, name, view, _, closing = match.groups()
        if view not in VIEWS:
            raise SystemExit(f"README block {name} {view}: unknown view; use one of {', '.join(VIEWS)}")
        return opening + VIEWS[view](load_source(name, root)) + "\n" + closing

    return BLOCK.sub(replace, text)


def differing_blocks(text: str, root: Path = ROOT) -> list[str]:
    """The `FILE VIEW` of every block whose text is not what its file renders."""
    written = {(m.group(2), m.group(3)): m.group(4) for m in BLOCK.finditer(text)}
    rendered = {(m.group(2), m.group(3)): m.group(4) for m in BLOCK.finditer(render_readme(text, root))}
    return [f"{name} {view}" for (name, view), body in written.items() if rendered[(name, view)] != body]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a block differs")
    parser.add_argument(
        "--readme", type=Path, help="one document to render or check (default: README.md and docs/reproduce-nsd.md)"
    )
    args = parser.parse_args(argv)
    documents = [args.readme] if args.readme else list(DOCUMENTS)
    status = 0
    for document in documents:
        root = args.readme.parent if args.readme else ROOT
        text = document.read_text()
        if args.check:
            for block in differing_blocks(text, root):
                print(
                    f"{document.name} block {block} differs from its result file; run python scripts/readme_tables.py"
                )
                status = 1
        else:
            document.write_text(render_readme(text, root))
    return status


if __name__ == "__main__":
    sys.exit(main())
