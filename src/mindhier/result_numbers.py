"""Which numbers a result file keeps, per measurement (`result_files.py` holds the record around them).

Each function reads what the command itself wrote — a demo folder's `eval/*/metrics.json`, `stage_times.json` and
`encoder/encoder_eval.json`, a benchmark's JSON — and returns the figures the README shows, rounded to what the
tables print (so a README table and its file can be compared exactly). Nothing here recomputes a metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mindhier import run_layout
from mindhier.errors import MindhierError
from mindhier.fileio import read_json

# the demo rows' metrics in the README's column order (`metrics.json` keys); proxies are labelled in the README
DEMO_METRICS = (
    "pixcorr",
    "ssim",
    "lite0_early.two_way",
    "lite0_late.two_way",
    "lite2_early.two_way",
    "lite2_late.two_way",
    "judge.colour_f1",
    "judge.category_f1",
)
DIGITS = 3


def _score(metric: dict[str, Any] | None) -> dict[str, Any] | None:
    """Mean and 95 % CI of one metric, rounded; None when the metric is absent."""
    if not metric or "mean" not in metric:
        return None
    low, high = metric["ci95"]
    return {"mean": round(metric["mean"], DIGITS), "ci95": [round(low, DIGITS), round(high, DIGITS)]}


def demo_numbers(run_dir: str | Path) -> dict[str, Any]:
    """A finished demo folder's figures: every evaluated row (mean and CI of each headline metric, PixCorr after
    every scale), the judge on the true images, the encoder's retrieval, and the seconds of every stage."""
    run_dir = Path(run_dir)
    rows: dict[str, Any] = {}
    judge_on_truth = None
    protocol: dict[str, Any] = {}
    for eval_dir in sorted(_eval_root(run_dir).iterdir()):
        path = eval_dir / "metrics.json"
        if not path.is_file():
            continue
        record = read_json(path, "metrics record")
        metrics = record["metrics"]
        row: dict[str, Any] = {name: _score(metrics.get(name)) for name in DEMO_METRICS}
        per_scale = record.get("per_scale") or {}
        if per_scale.get("means", {}).get("pixcorr"):
            row["pixcorr_after_scale"] = [round(v, DIGITS) for v in per_scale["means"]["pixcorr"]]
        use = record.get("condition_use")
        if use:  # per scale: NLL(shuffled) − NLL(true), nats per token
            row["condition_use_over_shuffled"] = [_score(s["use_over_shuffled"]) for s in use["scales"]]
        rows[eval_dir.name] = row
        judge = record.get("judge") or {}
        if judge.get("on_true_images") and judge_on_truth is None:
            truth = judge["on_true_images"]
            judge_on_truth = {k: round(truth[k], DIGITS) for k in ("colour_f1", "category_f1")}
        protocol = protocol or {k: record["protocol"].get(k) for k in ("subject", "split", "n_images")}
    encoder_eval = read_json(run_dir / run_layout.PIPELINE_ENCODER / run_layout.ENCODER_EVAL, "encoder evaluation")
    retrieval = next(iter(encoder_eval["subjects"].values()))["retrieval"]
    stages = read_json(run_dir / run_layout.PIPELINE_STAGE_TIMES, "stage times")
    study = run_dir / run_layout.PIPELINE_REPORT / ROUTING_STUDY_FILE
    extra = {"routing_study": routing_numbers(read_json(study, "routing study"))} if study.is_file() else {}
    return {
        "protocol": protocol,
        "rows": rows,
        "judge_on_true_images": judge_on_truth,
        "encoder_retrieval": {
            "brain_to_image_top1": round(retrieval["brain_to_image_top1"], DIGITS),
            "pool": retrieval["pool"],
            "chance": round(retrieval["chance"], DIGITS),
        },
        "stage_seconds": {
            name: round(value["seconds"], 1)
            for name, value in stages.items()
            if isinstance(value, dict) and "seconds" in value
        },
        **extra,
    }


def _eval_root(run_dir: Path) -> Path:
    """The rows' evaluations: `eval/` of a one-seed demo, or the first seed's of a several-seed one (demo-long)."""
    if (run_dir / run_layout.PIPELINE_EVAL).is_dir():
        return run_dir / run_layout.PIPELINE_EVAL
    seeds = sorted(run_dir.glob("seed*/" + run_layout.PIPELINE_EVAL), key=lambda p: int(p.parent.name[4:] or 0))
    if not seeds:
        raise MindhierError(f"{run_dir} has no {run_layout.PIPELINE_EVAL}/ folder: not a finished demo; run it first")
    return seeds[0]


ROUTING_STUDY_FILE = "routing_study.json"  # written by the report of a `demo --preset demo-long` folder
ROUTING_ARMS = {"brain": "brain", "oracle": "oracle (teacher features)"}


def routing_numbers(study: dict[str, Any]) -> dict[str, Any]:
    """The routing study's PixCorr of the reference routing per arm and its paired differences with every other
    routing (mean over seeds per image, then paired over images: bootstrap CI, Wilcoxon p)."""
    reference = study["reference"]
    arms, compared = {}, []
    for arm, label in ROUTING_ARMS.items():
        if arm not in study["arms"]:
            continue
        values = study["arms"][arm]
        differences = {}
        for routing, metrics in values[f"{reference} minus"].items():
            d = metrics["pixcorr"]
            differences[routing] = {
                "mean": round(d["mean"], DIGITS),
                "ci95": [round(v, DIGITS) for v in d["ci95"]],
                "p": float(f"{d['p_wilcoxon']:.2g}"),
            }
            compared += [routing] if routing not in compared else []
        arms[label] = {
            "coarse_to_fine_pixcorr": round(values["means"][reference]["pixcorr"], DIGITS),
            "differences": differences,
        }
    return {"metric": "pixcorr", "compared_with": compared, "arms": arms}


def sampler_numbers(record: dict[str, Any]) -> dict[str, Any]:
    """`bench sampler`'s figures: ms/image of sampling and of one teacher-forced pass, per batch and mode, and
    the compile time."""
    batches = {}
    for batch, per_mode in record["batches"].items():
        batches[batch] = {
            mode: {
                "sampling_ms_per_image": round(row["sampling_seconds"] * 1e3 / int(batch), 1),
                "teacher_forced_ms_per_image": round(row["teacher_forced_seconds"] * 1e3 / int(batch), 1),
                "ratio": round(row["ratio_sampling_to_teacher_forced"], 2),
                "first_call_seconds": row.get("first_call_seconds"),
            }
            for mode, row in per_mode.items()
            if isinstance(row, dict) and "sampling_seconds" in row
        }
    return {
        "preset": record["preset"],
        "generator_parameters": record["generator_parameters"],
        "tokens_per_image": record["tokens_per_image"],
        "batches": batches,
    }


DECODER_METRICS = ("pixcorr", "ssim", "lite0_late.two_way", "lite2_early.two_way")


def realtime_numbers(record: dict[str, Any]) -> dict[str, Any]:
    """`bench realtime`'s figures: latency per replay speed, betas' agreement, and decoding real-time vs offline."""
    decoding = record["decoding"]["metrics"]
    return {
        "run": record["run"],
        "trials": record["trials"],
        "window_s": record["window_s"],
        "windows": record["windows"],
        "tr_s": record["tr_s"],
        "latency": {
            speed: {k: row[k] for k in ("median_s", "p99_s", "max_s", "share_within_tr", "median_parts_s", "errors")}
            for speed, row in record["latency"].items()
        },
        "betas": {
            name: record["betas"][name] for name in ("realtime_vs_offline", "realtime_vs_truth", "offline_vs_truth")
        },
        "decoding": {
            name: {
                "realtime": _score(entry["realtime"]),
                "offline": _score(entry["offline"]),
                "difference": {**_score(entry["difference"]), "p_bootstrap": entry["difference"]["p_bootstrap"]},
                **({"ratio": entry["ratio"], "chance": entry["chance"]} if "ratio" in entry else {}),
                **({"note": entry["note"]} if entry.get("note") else {}),
            }
            for name, entry in decoding.items()
        },
    }


def decoders_numbers(record: dict[str, Any]) -> dict[str, Any]:
    """`bench decoders`' figures: every timed variant's ms/image and quality, the speed ratios, the baseline's
    quality against DDIM steps, speed at matched quality, where batch 1's time goes, and both models' sizes,
    starts and training steps."""
    points = [
        {
            "option": point["option"],
            "ms_per_image": {b: round(ms, 1) for b, ms in point["ms_per_image"].items()},
            "metrics": {m: round(point["metrics"][m], DIGITS) for m in DECODER_METRICS if m in point["metrics"]},
        }
        for point in record["speed_quality"]
    ]
    curve = {
        steps: {m: round(quality[m]["mean"], DIGITS) for m in DECODER_METRICS if m in quality}
        for steps, quality in record["quality_vs_ddim_steps"].items()
    }
    matched = {
        metric: {
            "ddim_steps": point["ddim_steps"],
            "reached": point["reached"],
            "ratio": point["ratio"],
            "scale_wise": round(point["scale_wise"], DIGITS),
            "ddim": round(point["ddim_score"], DIGITS),
        }
        for metric, point in record.get("matched_quality", {}).get("metrics", {}).items()
    }
    profiles = {
        name: {
            "profiled_ms": profile["profile"]["self_ms_per_call"],
            "top": [[op["name"], op["self_ms_per_pass"], op["share"]] for op in profile["profile"]["operators"][:6]],
            "floor_ms": profile["floor"]["floor_ms"],
            "gflop": round(profile["floor"]["flops_per_pass"] / 1e9, 3),
            "gemm_gflops": profile["floor"]["gemm_gflops"],
        }
        for name, profile in record.get("batch_one_profile", {}).items()
    }
    models = record["models"]
    return {
        "preset": record["preset"],
        "test_images": record["test_images"],
        "repeats": record["repeats"],
        "points": points,
        "ratios": record["speed_ratio_diffusion_over_scale_wise"],
        "ddim_curve": curve,
        "matched_quality": matched,
        "matched_mode": record.get("matched_quality", {}).get("mode"),
        "batch_one_profile": profiles,
        "scale_wise": {
            k: models["scale_wise"][k] for k in ("parameters", "training_steps", "init") if k in models["scale_wise"]
        },
        "diffusion": {
            k: models["diffusion"][k] for k in ("parameters", "steps", "init", "steps_rule") if k in models["diffusion"]
        },
    }


PLAN_STRATEGIES = (
    ("ddp", False, "DDP"),
    ("ddp", True, "DDP + ckpt"),
    ("fsdp", False, "FSDP"),
    ("fsdp", True, "FSDP + ckpt"),
)


def _size(parameters: int) -> str:
    return f"{parameters / 1e9:.2f} B" if parameters >= 1e9 else f"{parameters / 1e6:.0f} M"


def plan_numbers(record: dict[str, Any]) -> dict[str, Any]:
    """`plan`'s figures: per stage, the largest micro-batch (and accumulation) each strategy fits, and the expected
    hours (an estimate from counted FLOPs)."""
    hours = {t["stage"]: round(t["hours"], 1) for t in record["times"]}
    stages = []
    for stage in record["stages"]:
        fits = {}
        for strategy, checkpointing, label in PLAN_STRATEGIES:
            row = next(
                r
                for r in record["rows"]
                if r["stage"] == stage["name"] and r["strategy"] == strategy and r["checkpointing"] == checkpointing
            )
            accumulation = f" (accum {row['accumulation_steps']})" if row["accumulation_steps"] > 1 else ""
            fits[label] = f"{row['micro_batch']}{accumulation}" if row["fits"] else "does not fit"
        stages.append(
            {
                "name": stage["name"],
                "parameters": _size(stage["parameters"]),
                "fits": fits,
                "expected_hours": hours.get(stage["name"]),
            }
        )
    times = {t["stage"]: t for t in record["times"]}
    chosen = {stage: (strategy, checkpointing) for stage, strategy, checkpointing in record.get("chosen", [])}
    for stage in stages:
        time = times[stage["name"]]
        stage["steps"] = time["steps"]
        stage["compute_hours"] = round(time["compute_hours"], 2)
        stage["read_hours"] = round(time["read_hours"], 2)
        stage["bound"] = time["bound"]
        stage["read_tb"] = round(time["read_bytes"] / 1e12, 2)
        stage["epoch_gb"] = round(time["working_set_bytes"] / 1e9, 2)
        stage["teacher_pflop"] = round(time["teacher_flops"] / 1e15, 1)
        if stage["name"] in chosen:
            strategy, checkpointing = chosen[stage["name"]]
            row = next(
                r
                for r in record["rows"]
                if r["stage"] == stage["name"] and r["strategy"] == strategy and r["checkpointing"] == checkpointing
            )
            summary = next(s for s in record["stages"] if s["name"] == stage["name"])
            per_gpu = -(-summary["global_batch"] // record["gpus"])
            micro = min(per_gpu, row["micro_batch"])
            stage["trained_with"] = {
                "strategy": strategy,
                "checkpointing": checkpointing,
                "global_batch": summary["global_batch"],
                "micro_batch": micro,
                "peak_gib": round((row["fixed_bytes"] + micro * row["activation_bytes_per_sample"]) / (1 << 30), 1)
                if row["fits"]
                else None,
            }
    teacher = record.get("teacher") or {}
    return {
        "preset": record["preset"],
        "gpus": record["gpus"],
        "gpu_memory_gib": round(record["gpu_memory_bytes"] / (1 << 30), 1),
        "gpu_tflops": record["gpu_tflops"],
        "mfu": record["mfu"],
        "read_gbps": record.get("read_gbps"),
        "strategies": [label for _, _, label in PLAN_STRATEGIES],
        "stages": stages,
        "teacher": {
            "name": teacher.get("name"),
            "on_the_fly": record.get("teacher_on_the_fly"),
            "parameters": _size(teacher["parameters"]) if teacher else None,
            "gflop_per_image": round(teacher["forward_flops_per_image"] / 1e9, 1) if teacher else None,
            "cache_mb_per_image": round(teacher["feature_bytes_per_image"] / 1e6, 2) if teacher else None,
            "image_mb": round(teacher["image_bytes"] / 1e6, 2) if teacher else None,
        },
        "subjects": record.get("subjects"),
        "disk": [
            {"step": d["step"], "per": d["per"], "gb": round(d["bytes"] / 1e9, 2), "what": d["what"]}
            for d in record.get("disk", [])
        ],
        "disk_total_gb": round(record.get("disk_total_bytes", 0) / 1e9, 1),
    }


def prior_numbers(run_dir: str | Path) -> dict[str, Any]:
    """A generator pretraining run's figures after `pretrain generator --evaluate`: what was trained (the levers of
    the prior ablation), its held-out loss, condition use per scale and the stream oracle per routing (and the
    direct decoder, when measured)."""
    run_dir = Path(run_dir)
    config = run_layout.read_run_record(run_dir)["config"]
    summary = read_json(run_dir / run_layout.SUMMARY, "training summary")
    inputs = read_json(run_dir / run_layout.INPUTS, "run inputs")
    generator, train = config["generator"], config["train_generator"]
    use = read_json(run_dir / "condition_use.json", "condition-use record")
    oracle = read_json(run_dir / "oracle.json", "stream oracle record")
    numbers: dict[str, Any] = {
        "trained": {
            "images": inputs["stream"]["images"],
            "steps": summary["steps"],
            "batch_size": train["batch_size"],
            "seconds": round(summary["seconds"], 1),
            "parameters": summary["parameters"],
            **{k: generator[k] for k in ("width", "depth", "cfg_dropout")},
            "context_positions": generator.get("context_positions", "none"),
            "context_maps": generator.get("context_maps", "none"),
            "routings": list(train["routings"]) or [generator["routing"]],
        },
        "best_val_loss": round(summary["best_val"], DIGITS),
        "condition_use": {
            "images": use["n_images"],
            "over_null": [_score(row["use_over_null"]) for row in use["scales"]],
            "over_shuffled": [_score(row["use_over_shuffled"]) for row in use["scales"]],
            "accuracy_true": [round(row["accuracy"]["true"], DIGITS) for row in use["scales"]],
        },
        "oracle": {
            "images": oracle["images"],
            "sampler": oracle["sampler"],
            "rows": {row: {m: _score(v) for m, v in scores.items()} for row, scores in oracle["rows"].items()},
        },
    }
    direct = run_dir / "direct_decoder.json"
    if direct.is_file():
        record = read_json(direct, "direct-decoder record")
        numbers["direct_decoder"] = {
            "images": record["images"],
            "scores": {m: _score(v) for m, v in record["scores"].items()},
        }
    return numbers


ADAPTATION_METRICS = {  # result key → the study record's metric
    "brain_to_image_top1": "retrieval.brain_to_image",
    "image_to_brain_top1": "retrieval.image_to_brain",
    "lite2_late.two_way": "lite2_late.two_way",
    "pixcorr": "pixcorr",
}
ADAPTATION_REFERENCES = {
    "tokenizer_ceiling": "tokenizer ceiling",
    "teacher_oracle": "oracle (teacher features)",
    "shuffled_brain": "shuffled-brain control",
}


def adaptation_numbers(study_dir: str | Path) -> dict[str, Any]:
    """A finished adaptation study's headline rows: per budget and arm, retrieval both ways, the Lite2-late proxy and
    PixCorr (mean and CI over the test images), and the reference rows' means (`report/adaptation_study.json`)."""
    study = read_json(Path(study_dir) / run_layout.PIPELINE_REPORT / "adaptation_study.json", "adaptation study")
    rows = []
    for budget in study["budgets"]:
        sessions = budget["sessions"] or "all"
        for arm in ("adapted", "scratch"):
            rows.append(
                {"sessions": sessions, "arm": arm}
                | {key: _score(budget[arm].get(metric)) for key, metric in ADAPTATION_METRICS.items()}
            )
    references = {
        label: {m: round(study["references"][row][m]["mean"], DIGITS) for m in ("lite2_late.two_way", "pixcorr")}
        for row, label in ADAPTATION_REFERENCES.items()
        if row in study["references"]
    }
    return {"subject": study["held_out"], "rows": rows, "reference_rows": references}
