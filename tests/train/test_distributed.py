"""Every training loop on N processes (gloo, CPU) reproduces one process with the same global batch.

For each stage, 2 processes × batch b train like 1 process × batch 2b: the logged loss curve and the final
weights agree within a floating-point tolerance (the processes' rows are reduced in another order, so not
bit for bit), every process ends with the same weights, only rank 0 writes the log, and the tokenizer's
codebooks stay identical on both processes through dead-code restarts. FSDP: a run saved by 2 processes
resumes on 1 and ends where the 2-process run ended.
"""

import dataclasses
import json
import shutil
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from mindhier import run_layout

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="file:// rendezvous and fork are tested on Linux")

RTOL, ATOL = 1e-4, 1e-5  # float32, ~20 steps of Adam: reductions in another order drift this far at most


def _worker(rank, world_size, init_file, stage, cfg, args, out_dir, result_dir, keep_weights):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        result = _train(stage, cfg, args, out_dir, rank=rank, world_size=world_size)
        if keep_weights:  # the test's record of each process's (unsharded) weights
            torch.save(result.model.state_dict(), f"{result_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _train(stage, cfg, args, out_dir, **kwargs):
    if stage == "encoder":
        from mindhier.train.encoder import train_encoder

        return train_encoder(cfg, args["data"], out_dir, subjects=args["subjects"], **kwargs)
    if stage == "adapt":
        from mindhier.train.adapt import adapt_encoder

        return adapt_encoder(cfg, args["shared"], args["data"], args["subject"], out_dir, **kwargs)
    if stage == "tokenizer":
        from mindhier.train.tokenizer import train_tokenizer

        return train_tokenizer(cfg, args["data"], out_dir, **kwargs)
    from mindhier.train.diffusion import train_diffusion
    from mindhier.train.generator import train_generator

    train = train_generator if stage == "generator" else train_diffusion
    return train(cfg, args["data"], args["encoder"], args["tokenizer"], out_dir, **kwargs)


def _two_processes(stage, cfg, args, out_dir, result_dir, keep_weights=True):
    mp.start_processes(
        _worker,
        args=(2, str(result_dir / "rendezvous"), stage, cfg, args, str(out_dir), str(result_dir), keep_weights),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    return [torch.load(result_dir / f"rank{r}.pt", weights_only=True) for r in (0, 1)] if keep_weights else None


def _losses(run_dir):
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / run_layout.LOG).read_text().splitlines())}


def _assert_close(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), rtol=RTOL, atol=ATOL, msg=k)


def _short(cfg, section: str, **changes):
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)})


def _compare_one_and_two(stage, kind, cfg, args, tmp_path):
    one = _train(stage, cfg, args, tmp_path / "one")
    ranks = _two_processes(stage, cfg, args, tmp_path / "two", tmp_path)
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # the processes agree exactly
    _assert_close(ranks[0], {k: v for k, v in one.model.state_dict().items()})
    lines = (tmp_path / "two" / run_layout.LOG).read_text().splitlines()
    assert len(lines) == len(set(lines))  # one writer
    curve_one, curve_two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert curve_one.keys() == curve_two.keys()
    for step in curve_one:
        assert curve_two[step] == pytest.approx(curve_one[step], rel=RTOL, abs=ATOL), step
    config = json.loads((tmp_path / "two" / run_layout.CONFIG).read_text())
    assert config["kind"] == kind and config["distributed"]["world_size"] == 2
    return one, ranks


def test_encoder_two_processes_match_one(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    cfg = _short(cfg, "train_encoder", steps=20, eval_every=10, checkpoint_every=10)
    _compare_one_and_two("encoder", "encoder", cfg, {"data": str(result.root), "subjects": (1, 2)}, tmp_path)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_encoder_with_the_teacher_on_the_fly_on_two_processes_matches_the_cached_run(tiny_dataset, tmp_path, strategy):
    # teacher.cache=false: each process runs the teacher on its share of every batch inside the step
    cfg, result = tiny_dataset
    cached = _short(cfg, "train_encoder", steps=20, eval_every=10, checkpoint_every=10)
    online = _short(_short(cached, "teacher", cache=False), "train_encoder", strategy=strategy)
    args = {"data": str(result.root), "subjects": (1, 2)}
    _train("encoder", cached, args, tmp_path / "cached")
    _two_processes("encoder", online, args, tmp_path / "two", tmp_path, keep_weights=False)
    last = run_layout.last_weights_file("encoder")  # written whole by rank 0, also from FSDP's shards
    _assert_close(load_file(tmp_path / "two" / last), load_file(tmp_path / "cached" / last))
    curve_one, curve_two = _losses(tmp_path / "cached"), _losses(tmp_path / "two")
    assert curve_one.keys() == curve_two.keys()
    for step in curve_one:
        assert curve_two[step] == pytest.approx(curve_one[step], rel=RTOL, abs=ATOL), step
    assert json.loads((tmp_path / "two" / run_layout.FEATURES).read_text())["on_the_fly"]


@pytest.mark.parametrize("supervision", ["terminal_only", "single"])
def test_encoder_with_unsupervised_heads_trains_on_two_processes(tiny_dataset, tmp_path, supervision):
    # the heads the loss does not supervise get no gradient; DDP must not wait for one (the recipe's ablation)
    cfg, result = tiny_dataset
    cfg = _short(cfg, "train_encoder", steps=6, eval_every=3, checkpoint_every=3)
    cfg = _short(cfg, "alignment", supervision=supervision)
    _compare_one_and_two("encoder", "encoder", cfg, {"data": str(result.root), "subjects": (1, 2)}, tmp_path)


def test_adaptation_two_processes_match_one(tiny_dataset, tmp_path):
    from mindhier.train.encoder import train_encoder

    cfg, result = tiny_dataset
    shared = train_encoder(_short(cfg, "train_encoder", steps=20), result.root, tmp_path / "shared", subjects=(1,))
    cfg = _short(cfg, "adapt", steps=16, alone_steps=6, batch_size=32, eval_every=8, checkpoint_every=8)
    args = {"data": str(result.root), "shared": str(shared.run_dir), "subject": 2}
    _compare_one_and_two("adapt", "encoder", cfg, args, tmp_path)


def test_tokenizer_two_processes_match_one_and_keep_one_codebook(tiny_dataset, tmp_path):
    # a short run that ends with a dead-code restart: later, the quantiser's arg-min turns float noise into
    # different code choices (and Adam magnifies the noise on rarely hit codes), so longer runs drift apart
    # chaotically; the two processes themselves stay identical, which is what keeps one codebook
    cfg, result = tiny_dataset
    cfg = _short(cfg, "train_tokenizer", steps=5, eval_every=5, checkpoint_every=5, dead_code_every=5)
    _, ranks = _compare_one_and_two("tokenizer", "tokenizer", cfg, {"data": str(result.root)}, tmp_path)
    log = [json.loads(line) for line in (tmp_path / "two" / run_layout.LOG).read_text().splitlines()]
    assert sum(r.get("restarted_codes", 0) for r in log) > 0  # restarts happened, and the codebooks still agree
    for key in ("quantize.embedding.weight", "quantize.ema_vocab_hit_SV"):
        assert torch.equal(ranks[0][key], ranks[1][key])


def test_generator_two_processes_match_one(tiny_stage_runs, tmp_path):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    cfg = _short(cfg, "train_generator", steps=20, eval_every=10, checkpoint_every=10)
    args = {"data": str(result.root), "encoder": str(encoder), "tokenizer": str(tokenizer)}
    _compare_one_and_two("generator", "generator", cfg, args, tmp_path)


def test_diffusion_two_processes_match_one(tiny_stage_runs, tmp_path):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    cfg = _short(cfg, "train_diffusion", steps=20, eval_every=10, checkpoint_every=10)
    args = {"data": str(result.root), "encoder": str(encoder), "tokenizer": str(tokenizer)}
    _compare_one_and_two("diffusion", "diffusion", cfg, args, tmp_path)


def test_fsdp_run_saved_by_two_processes_resumes_on_one(tiny_stage_runs, tmp_path):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    cfg = _short(
        cfg,
        "train_generator",
        steps=20,
        eval_every=10,
        checkpoint_every=10,
        strategy="fsdp",
        activation_checkpointing=True,
    )
    args = {"data": str(result.root), "encoder": str(encoder), "tokenizer": str(tokenizer)}
    _two_processes("generator", cfg, args, tmp_path / "two", tmp_path, keep_weights=False)
    two = tmp_path / "two"
    assert json.loads((two / run_layout.CONFIG).read_text())["distributed"]["strategy"] == "fsdp"
    summary = json.loads((two / run_layout.SUMMARY).read_text())
    assert summary["world_size"] == 2 and summary["strategy"] == "fsdp" and summary["activation_checkpointing"]
    # resume the 2-process run from its step-10 resume point in one process
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    shutil.rmtree(resumed / run_layout.RESUME_DIR / run_layout.resume_point_name(20))
    (resumed / run_layout.SUMMARY).unlink()
    out = _train("generator", cfg, args, resumed, resume=True)
    assert out.resumed_from == 10
    two_final = _load_generator_weights(two)
    _assert_close(out.model.state_dict(), two_final)
    _assert_close(_load_generator_weights(resumed), two_final)


def _load_generator_weights(run_dir):
    from mindhier.runs import load_generator

    return load_generator(run_dir, weights=run_layout.last_weights_file("generator")).model.state_dict()


def test_torchrun_trains_a_generator_with_fsdp_from_the_cli(tiny_stage_runs, tmp_path):
    import os
    import subprocess

    _, result, encoder, tokenizer = tiny_stage_runs
    out = tmp_path / "run"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "mindhier", "train", "generator", "--data", str(result.root), "--encoder", str(encoder)),
        *("--tokenizer", str(tokenizer), "--out", str(out), "--preset", "tiny", "--device", "cpu", "--quiet"),
        *("--set", "train_generator.strategy=fsdp", "--set", "train_generator.steps=6"),
        *("--set", "train_generator.eval_every=6", "--set", "train_generator.checkpoint_every=3"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained a coarse_to_fine generator") == 1  # rank 0 prints
    assert "(2 process(es), fsdp, cpu)" in done.stdout
    config = json.loads((out / run_layout.CONFIG).read_text())
    assert config["distributed"] == {"world_size": 2, "strategy": "fsdp", "device": "cpu", "backend": "gloo"}
    assert json.loads((out / run_layout.SUMMARY).read_text())["world_size"] == 2
