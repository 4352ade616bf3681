"""The training memory planner: parameter bytes from meta-built models, measured activations, the micro-batch
that fits, the table and the `plan` command."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math

import pytest
import torch

from mindhier.cli import plan_commands
from mindhier.cli.plan_commands import DEFAULT_VOXELS as CLI_DEFAULT_VOXELS
from mindhier.cli.plan_commands import add_plan_parser
from mindhier.config import TeacherConfig, preset
from mindhier.errors import ConfigError
from mindhier.memory_plan import (
    DEFAULT_VOXELS,
    GIB,
    TeacherShapes,
    format_plan,
    plan_memory,
    plan_record,
    stage_activations,
    stage_rows,
    stage_specs,
    teacher_shapes,
)
from mindhier.memory_plan import plan as plan_module
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR

cli_main = importlib.import_module("mindhier.cli.main")  # the module (the package's `main` attribute is the function)
build_parser = cli_main.build_parser

GENERATOR_PARAMETERS = 2_318_294_656  # nsd-paper's ScaleAR (Switti-512 with MindHier's modules)
ENCODER_PARAMETERS = 307_292_160  # nsd-paper's encoder for NSD subject 1 (15,724 voxels), with its text branch
TOKENIZER_PARAMETERS = 108_948_355  # the VQ-VAE VAR and Switti publish


@pytest.fixture(scope="module")
def paper_plan():
    return plan_memory(preset("nsd-paper"), gpus=8, gpu_memory_gib=80)


def tiny_unmatched():
    """The tiny preset with the diffusion baseline at its configured size (the parameter-matching search over
    depths is the slowest part of planning a tiny config)."""
    cfg = preset("tiny")
    return dataclasses.replace(cfg, diffusion=dataclasses.replace(cfg.diffusion, matched=False))


@pytest.fixture(scope="module")
def tiny_plan():
    return plan_memory(preset("tiny"), gpus=2, gpu_memory_gib=0.05, voxels=300)


def test_paper_parameter_bytes_follow_the_meta_built_models(paper_plan):
    cfg = preset("nsd-paper")
    shapes = GeneratorShapes(
        vocab=cfg.tokenizer.vocab,
        latent_channels=cfg.tokenizer.latent_channels,
        scales=tuple(cfg.tokenizer.scales),
        n_levels=cfg.encoder.depth,
        level_tokens=257,
        context_width=cfg.encoder.width,
        pooled_width=768,
    )
    with torch.device("meta"):
        count = sum(p.numel() for p in ScaleAR(cfg.generator, shapes).parameters())
    assert count == GENERATOR_PARAMETERS

    generator = paper_plan.stage("generator")
    assert generator.parameters == count
    assert generator.frozen_parameters == ENCODER_PARAMETERS + TOKENIZER_PARAMETERS
    for checkpointing in (False, True):
        ddp = paper_plan.row("generator", "ddp", checkpointing)
        assert (ddp.parameter_bytes, ddp.gradient_bytes, ddp.optimizer_bytes) == (4 * count, 4 * count, 8 * count)
        assert ddp.frozen_bytes == 4 * (ENCODER_PARAMETERS + TOKENIZER_PARAMETERS)
        fsdp = paper_plan.row("generator", "fsdp", checkpointing)
        for got, per_parameter in ((fsdp.parameter_bytes, 4), (fsdp.gradient_bytes, 4), (fsdp.optimizer_bytes, 8)):
            exact = per_parameter * count / 8
            assert exact <= got <= exact * 1.001  # dim-0 shards are padded to a multiple of the GPU count

    encoder = paper_plan.stage("encoder")
    assert encoder.parameters == ENCODER_PARAMETERS
    assert encoder.frozen_parameters == 0 and encoder.frozen_models == ()
    # nsd-paper runs the teacher in the step: its fp32 weights and autocast's bf16 copies
    assert encoder.teacher_parameters == paper_plan.teacher.parameters > 0
    assert paper_plan.row("encoder", "ddp", False).frozen_bytes == (4 + 2) * encoder.teacher_parameters
    diffusion = paper_plan.stage("diffusion")
    # diffusion.matched: sized to the generator within 5 %, as train/diffusion.py does
    assert abs(diffusion.parameters - count) / count <= 0.05
    assert paper_plan.usable_bytes == 72 * GIB


def test_transient_terms_follow_the_stated_formulas(paper_plan):
    for stage in paper_plan.stages:
        ddp = paper_plan.row(stage.name, "ddp", False)
        # 8 GPUs: autocast's bf16 copies of the matmul weights plus DDP's fp32 gradient buckets
        assert ddp.transient_bytes == 2 * stage.matmul_parameters + 4 * stage.parameters
        fsdp = paper_plan.row(stage.name, "fsdp", False)
        root, block = stage.outside_block_parameters, stage.largest_block_parameters
        assert fsdp.transient_bytes == 2 * root + 2 * 2 * block + 4 * max(root, block)
    # the encoder's voxel MLP (outside the blocks) is its largest FSDP unit; the generator's blocks are
    encoder, generator = paper_plan.stage("encoder"), paper_plan.stage("generator")
    assert encoder.outside_block_parameters > encoder.largest_block_parameters
    assert generator.largest_block_parameters > generator.outside_block_parameters
    assert generator.blocks == 30 and encoder.blocks == 8  # 4 levels + the 4-layer text branch


def test_teacher_shapes_without_weights():
    cfg = preset("nsd-paper")
    assert teacher_shapes(cfg.teacher) == TeacherShapes(257, (768, 768, 768, 768), 77, 768)
    no_text = dataclasses.replace(cfg.teacher, text=False)
    assert teacher_shapes(no_text) == TeacherShapes(257, (768,) * 4, 0, 0)
    demo = preset("demo").teacher
    assert teacher_shapes(demo) == TeacherShapes(demo.grid**2 + 1, (40, 80, 112, 320), 0, 0)
    for name in ("RN50", "no-such-model"):
        with pytest.raises(ConfigError, match=r"cannot size teacher\.clip_model"):
            teacher_shapes(TeacherConfig(name="clip", clip_model=name, layers=(1, 2, 3, 4)))


def test_checkpointing_shrinks_activations(paper_plan):
    for stage in paper_plan.stages:
        act = stage.activations
        assert act.batch == 1
        assert 0 < act.checkpointed_bytes < act.saved_bytes
        assert act.outside_bytes + act.largest_block_bytes <= act.saved_bytes
        off = paper_plan.row(stage.name, "fsdp", False)
        on = paper_plan.row(stage.name, "fsdp", True)
        assert on.activation_bytes_per_sample < off.activation_bytes_per_sample
        assert on.micro_batch > off.micro_batch
    # checkpointing keeps at least every block's residual input, [1, L, D] in bf16 (the brief's estimate)
    generator, cfg = paper_plan.stage("generator"), preset("nsd-paper")
    tokens = sum(s * s for s in cfg.tokenizer.scales)
    assert generator.activations.block_input_bytes >= cfg.generator.depth * tokens * cfg.generator.width * 2
    # without checkpointing, every block's saved tensors are held: far more than one block's
    assert generator.activations.saved_bytes > 20 * generator.activations.largest_block_bytes


def test_activations_grow_linearly_with_the_batch():
    specs = {spec.name: spec for spec in stage_specs(tiny_unmatched(), voxels=300)}
    for name in ("encoder", "generator", "diffusion"):
        one, two = stage_activations(specs[name], 1), stage_activations(specs[name], 2)
        assert (one.batch, two.batch) == (1, 2)
        # per-sample tensors only: parameters and buffers are not counted, so batch 2 saves twice as much
        assert 1.95 < two.saved_bytes / one.saved_bytes < 2.05, name
        assert 1.95 < two.checkpointed_bytes / one.checkpointed_bytes < 2.05, name
    for name in ("encoder", "generator"):  # several blocks: checkpointing pays off even at tiny size
        act = stage_activations(specs[name], 1)
        assert act.checkpointed_bytes < act.saved_bytes


def test_micro_batch_is_the_largest_that_fits(paper_plan, tiny_plan):
    for plan in (paper_plan, tiny_plan):
        for row in plan.rows:
            per_sample = row.activation_bytes_per_sample
            if row.fits:
                assert row.fixed_bytes + row.micro_batch * per_sample <= plan.usable_bytes
                assert row.fixed_bytes + (row.micro_batch + 1) * per_sample > plan.usable_bytes
                global_batch = plan.stage(row.stage).global_batch
                assert row.accumulation_steps == math.ceil(global_batch / (plan.gpus * row.micro_batch))
            else:
                assert row.fixed_bytes + per_sample > plan.usable_bytes and row.accumulation_steps is None
    # 80 GB: the paper generator fits one sample per GPU under DDP without checkpointing (10 accumulation steps
    # for its global batch 80 on 8 GPUs) and many more with checkpointing
    ddp_off = paper_plan.row("generator", "ddp", False)
    assert ddp_off.micro_batch >= 1 and paper_plan.row("generator", "ddp", True).micro_batch > ddp_off.micro_batch


def test_more_memory_never_fits_a_smaller_micro_batch(paper_plan):
    for stage in paper_plan.stages:
        previous: dict[tuple[str, bool], int] = {}
        for gib in (8, 16, 24, 40, 48, 64, 80, 141, 192):
            for row in stage_rows(stage, int(gib * GIB * 0.9)):
                key = (row.strategy, row.checkpointing)
                assert row.micro_batch >= previous.get(key, 0)
                previous[key] = row.micro_batch
    # 8 × 40 GiB: 49 GiB of fixed DDP state per GPU leaves the generator no room; FSDP still fits it
    rows = {(r.strategy, r.checkpointing): r for r in stage_rows(paper_plan.stage("generator"), int(36 * GIB))}
    assert not rows["ddp", False].fits and not rows["ddp", True].fits and rows["fsdp", True].fits


def test_fsdp_fits_at_least_ddp(paper_plan, tiny_plan):
    for plan in (paper_plan, tiny_plan):
        assert plan.gpus > 1
        for stage in plan.stages:
            for checkpointing in (False, True):
                ddp = plan.row(stage.name, "ddp", checkpointing)
                fsdp = plan.row(stage.name, "fsdp", checkpointing)
                assert fsdp.fixed_bytes < ddp.fixed_bytes
                assert fsdp.micro_batch >= ddp.micro_batch
    assert (
        paper_plan.row("generator", "fsdp", False).micro_batch > paper_plan.row("generator", "ddp", False).micro_batch
    )


def test_format_plan_lists_every_stage_and_strategy(paper_plan):
    text = format_plan(paper_plan)
    for title in ("Stage 1: brain encoder", "Stage 2: scale-wise generator", "Baseline: latent diffusion"):
        assert title in text
    assert "2,318,294,656 trainable parameters" in text and "307,292,160 trainable parameters" in text
    assert "usable 72.00 GiB" in text and "per GPU, GiB:" in text
    for stage in ("encoder", "generator", "diffusion"):
        for strategy in ("ddp", "fsdp"):
            for ckpt in ("off", "on"):
                rows = [line for line in text.splitlines() if line.split()[:3] == [stage, strategy, ckpt]]
                assert len(rows) == 1, (stage, strategy, ckpt)
    assert "assumptions:" in text and "reserve: 10%" in text and "loss" in text
    ddp_off = paper_plan.row("generator", "ddp", False)
    line = next(line for line in text.splitlines() if line.split()[:3] == ["generator", "ddp", "off"])
    assert line.split()[3] == f"{ddp_off.parameter_bytes / GIB:.2f}"


def test_one_gpu_without_room():
    plan = plan_memory(tiny_unmatched(), gpus=1, gpu_memory_gib=0.001, voxels=300)
    for stage in plan.stages:
        # one process trains the plain module whatever the strategy: no DDP buckets, no shards
        ddp, fsdp = plan.row(stage.name, "ddp", True), plan.row(stage.name, "fsdp", True)
        assert ddp.transient_bytes == 2 * stage.matmul_parameters
        assert fsdp.parameter_bytes == 4 * stage.parameters
        assert dataclasses.replace(fsdp, strategy="ddp") == ddp
    assert not any(row.fits for row in plan.rows)
    assert format_plan(plan).count("does not fit") == len(plan.rows) == 12


def test_plan_record_is_json_ready(paper_plan):
    record = json.loads(json.dumps(plan_record(paper_plan)))
    assert record["gpus"] == 8 and record["preset"] == "nsd-paper" and len(record["rows"]) == 12
    row = next(
        r for r in record["rows"] if (r["stage"], r["strategy"], r["checkpointing"]) == ("generator", "ddp", False)
    )
    assert row["parameter_bytes"] == 4 * GENERATOR_PARAMETERS
    assert row["fixed_bytes"] == paper_plan.row("generator", "ddp", False).fixed_bytes
    stage = next(s for s in record["stages"] if s["name"] == "encoder")
    assert stage["parameters"] == ENCODER_PARAMETERS
    assert stage["activations"]["checkpointed_bytes"] < stage["activations"]["saved_bytes"]


def test_invalid_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="--gpus"):
        plan_memory(preset("tiny"), gpus=0, gpu_memory_gib=80)
    with pytest.raises(ConfigError, match="--gpu-memory"):
        plan_memory(preset("tiny"), gpus=1, gpu_memory_gib=0)
    with pytest.raises(ConfigError, match="--voxels"):
        plan_memory(preset("tiny"), gpus=1, gpu_memory_gib=80, voxels=0)


# --------------------------------------------------------------------------------------------------- CLI


def _parser_with_plan() -> argparse.ArgumentParser:
    """`mindhier`'s parser with `plan` added, unless main.py already adds it."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "plan" not in commands.choices:
        add_plan_parser(commands)
    return parser


def run_plan(monkeypatch, capsys, *argv):
    monkeypatch.setattr(cli_main, "build_parser", _parser_with_plan)
    try:
        code = cli_main.main(["plan", *map(str, argv)])
    except SystemExit as stop:  # an argument error: the same one line
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_the_table_and_writes_json(tmp_path, monkeypatch, capsys):
    out_json = tmp_path / "plan.json"
    argv = ["--preset", "tiny", "--set", "diffusion.matched=false", "--gpus", 2, "--gpu-memory", 16, "--voxels", 300]
    code, out, _ = run_plan(monkeypatch, capsys, *argv, "--json", out_json)
    assert code == 0
    assert "per GPU, MiB:" in out and "preset tiny, 2 GPU(s) × 16 GiB" in out and "encoder input 300 voxels" in out
    table = [line.split() for line in out.splitlines() if line.split()[1:2] in (["ddp"], ["fsdp"])]
    assert sorted(row[0] for row in table) == ["diffusion"] * 4 + ["encoder"] * 4 + ["generator"] * 4
    assert "LatentDiT depth 2 width 32, 64 tokens" in out  # --set reached the config: the unmatched baseline
    assert f"wrote {out_json}" in out
    record = json.loads(out_json.read_text())
    assert record["gpus"] == 2 and record["voxels"] == 300 and len(record["rows"]) == 12
    assert all(row["fits"] and row["micro_batch"] > 0 for row in record["rows"])
    # a second plan into the same file is refused (the first one kept), and replaces it with --overwrite
    before = out_json.read_text()
    code, _, err = run_plan(monkeypatch, capsys, *argv, "--gpus", 4, "--json", out_json)
    assert code == 2 and "--overwrite" in err and out_json.read_text() == before
    code, _, _ = run_plan(monkeypatch, capsys, *argv, "--gpus", 4, "--json", out_json, "--overwrite")
    assert code == 0 and json.loads(out_json.read_text())["gpus"] == 4


def test_cli_user_errors_exit_2(monkeypatch, capsys):
    code, out, err = run_plan(monkeypatch, capsys, "--preset", "tiny", "--gpus", 0, "--gpu-memory", 80)
    assert code == 2 and out == ""
    assert err.strip() == "mindhier: error: argument --gpus: must be at least 1, got 0; pass 1 or more"


def test_cli_defaults():
    assert CLI_DEFAULT_VOXELS == DEFAULT_VOXELS == 15724
    assert plan_commands.DEFAULT_GPU_TFLOPS == plan_module.DEFAULT_GPU_TFLOPS
    assert plan_commands.DEFAULT_MFU == plan_module.DEFAULT_MFU
    assert plan_commands.DEFAULT_READ_GBPS == plan_module.DEFAULT_READ_GBPS
    assert plan_commands.DEFAULT_SUBJECTS == plan_module.NSD_SUBJECTS
    args = _parser_with_plan().parse_args(["plan", "--gpus", "8", "--gpu-memory", "80"])
    assert (args.preset, args.voxels, args.json) == ("nsd-paper", 15724, None)
    assert (args.read_gbps, args.subjects) == (plan_module.DEFAULT_READ_GBPS, plan_module.NSD_SUBJECTS)


def test_expected_hours_follow_the_counted_flops(paper_plan):
    generator = paper_plan.stage("generator")
    # a dense transformer's forward: ≈ 2 FLOPs per matmul parameter per token, plus attention, minus the AdaLN
    # projections (0.66 B parameters applied once per sample, not per token): within a quarter of that rule
    tokens = 2240 - 1
    assert 0.75 < generator.activations.forward_flops / (2 * generator.matmul_parameters * tokens) < 1.25
    times = {t.stage: t for t in paper_plan.times}
    expected = 9000 * 80 * generator.training_flops_per_sample
    assert times["generator"].training_flops == expected
    rate = paper_plan.gpus * paper_plan.gpu_tflops * 1e12 * paper_plan.mfu
    assert times["generator"].hours == pytest.approx(expected / rate / 3600)
    # the diffusion baseline is matched to the generator's training FLOPs, so it takes the same time
    assert times["diffusion"].training_flops == times["generator"].training_flops and times["diffusion"].steps > 0
    text = format_plan(paper_plan)
    assert "expected time (an estimate, not a measurement" in text and f"{times['generator'].hours:>6.2f}" in text
    with pytest.raises(ConfigError, match="--mfu in"):
        plan_memory(preset("tiny"), gpus=1, gpu_memory_gib=80, mfu=1.5)


def with_cache(cfg, cache: bool):
    return dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, cache=cache))


def test_the_teacher_on_the_fly_costs_flops_and_memory_and_saves_disk_and_reads(paper_plan):
    cached = plan_memory(with_cache(preset("nsd-paper"), True), gpus=8, gpu_memory_gib=80)
    assert paper_plan.teacher_on_the_fly and not cached.teacher_on_the_fly
    teacher = paper_plan.teacher
    # CLIP ViT-L/14 to layer 24 (303 M) and its text tower (123 M); ≈ 2 FLOPs per matmul parameter per token
    assert 420e6 < teacher.parameters < 435e6
    assert 150e9 < teacher.forward_flops_per_image < 200e9
    assert teacher.feature_bytes_per_image == 2 * (4 * 257 * 768 + 77 * 768)  # four levels + captions, float16
    on, off = paper_plan.stage("encoder"), cached.stage("encoder")
    assert on.training_flops_per_sample - off.training_flops_per_sample == teacher.forward_flops_per_image
    times_on, times_off = paper_plan.times[0], cached.times[0]
    assert times_on.teacher_flops == 17_578 * 512 * teacher.forward_flops_per_image and times_off.teacher_flops == 0
    # reads per sample: betas + the stimulus (on the fly) or the cached targets
    betas = 4 * 15724
    assert on.read_bytes_per_sample == betas + teacher.image_bytes
    assert off.read_bytes_per_sample == betas + teacher.feature_bytes_per_image
    assert times_off.read_hours > 4 * times_on.read_hours and times_off.bound == "reading"
    for strategy in ("ddp", "fsdp"):
        row_on, row_off = paper_plan.row("encoder", strategy, True), cached.row("encoder", strategy, True)
        assert row_on.frozen_bytes - row_off.frozen_bytes == 6 * teacher.parameters
        assert row_on.activation_bytes_per_sample - row_off.activation_bytes_per_sample == (
            teacher.activation_bytes_per_image
        )
        assert row_on.micro_batch <= row_off.micro_batch
    disk_on = {row.step: row for row in paper_plan.disk}
    disk_off = {row.step: row for row in cached.disk}
    assert disk_on["features"].bytes == 0
    assert disk_off["features"].bytes == 37_000 * teacher.feature_bytes_per_image  # ≈ 63 GB for four subjects
    assert 60e9 < disk_off["features"].bytes < 65e9
    assert disk_on["train generator"].bytes == (2 * 4 + 2 * 12) * GENERATOR_PARAMETERS
    record = plan_record(paper_plan)
    assert record["disk_total_bytes"] < plan_record(cached)["disk_total_bytes"]
    assert json.loads(json.dumps(record))["teacher"]["parameters"] == teacher.parameters
    text = format_plan(paper_plan)
    assert "teacher clip ViT-L-14, on the fly" in text and "disk per step of the recipe" in text


def test_the_planned_cache_bytes_per_image_are_what_a_cache_holds(tiny_dataset, tmp_path):
    from safetensors import safe_open

    from mindhier.data.feature_cache import build_feature_cache
    from mindhier.memory_plan.teacher_cost import teacher_cost
    from mindhier.teachers import build_teacher

    cfg, result = tiny_dataset
    for teacher_cfg in (cfg.teacher, preset("demo").teacher):
        cache = build_feature_cache(result.root, build_teacher(teacher_cfg), out=tmp_path / str(teacher_cfg.grid))
        stored = 0
        for shard in cache.meta["shards"]:
            with safe_open(str(cache.path / shard["file"]), framework="pt") as handle:
                stored += sum(_bytes(handle, key) for key in handle.keys() if key.startswith("level"))  # noqa: SIM118
        assert stored / cache.n_images == teacher_cost(teacher_cfg).feature_bytes_per_image
        on_disk = sum((cache.path / shard["file"]).stat().st_size for shard in cache.meta["shards"])
        per_image = teacher_cost(teacher_cfg).feature_bytes_per_image
        assert per_image <= on_disk / cache.n_images <= per_image + 8 + 4096 / cache.n_images  # + index, header


def _bytes(handle, key) -> int:
    tensor = handle.get_tensor(key)
    return tensor.numel() * tensor.element_size()
