"""The Stage-1 loop under DistributedDataParallel (gloo, 2 CPU processes), as `torchrun` would run it."""

import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mindhier.runs import load_encoder
from mindhier.train.encoder import LAST_WEIGHTS


def _worker(rank, world_size, init_file, cfg, data_dir, out_dir, result_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        from mindhier.train.encoder import train_encoder

        torch.set_num_threads(1)
        run = train_encoder(cfg, data_dir, out_dir, subjects=(1, 2), rank=rank, world_size=world_size)
        torch.save(run.model.state_dict(), f"{result_dir}/rank{rank}.pt")  # test-side record of each rank
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform != "linux", reason="file:// rendezvous and fork are tested on Linux")
def test_two_rank_training_writes_once_and_matches(tiny_dataset, tmp_path):
    cfg, result = tiny_dataset
    out = tmp_path / "ddp-run"
    mp.start_processes(
        _worker,
        args=(2, str(tmp_path / "rendezvous"), cfg, str(result.root), str(out), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    files = sorted(p.name for p in out.iterdir())
    assert "encoder.safetensors" in files and "train_state.pt" in files and "log.jsonl" in files
    lines = (out / "log.jsonl").read_text().splitlines()
    assert len(lines) == len({line for line in lines})  # one writer: no duplicated records
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # gradients were all-reduced
    saved = load_encoder(out, weights=LAST_WEIGHTS).model.state_dict()
    assert all(torch.equal(saved[k], ranks[0][k]) for k in saved)
