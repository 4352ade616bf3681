import numpy as np
import pytest

from mindhier.train.sampling import global_batch, rank_batch


def test_batches_are_deterministic_cover_an_epoch_and_change_between_epochs():
    n, b = 100, 20
    epoch0 = [global_batch(n, b, step, seed=3) for step in range(5)]
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(n))
    np.testing.assert_array_equal(global_batch(n, b, 2, seed=3), epoch0[2])  # resumable
    assert not np.array_equal(global_batch(n, b, 5, seed=3), epoch0[0])
    assert not np.array_equal(global_batch(n, b, 0, seed=4), epoch0[0])


def test_ranks_partition_the_global_batch():
    parts = [rank_batch(100, 20, step=7, seed=0, rank=r, world_size=4) for r in range(4)]
    assert all(len(p) == 5 for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.sort(global_batch(100, 20, 7, 0)))
    with pytest.raises(ValueError, match="not divisible by 3 ranks"):
        rank_batch(100, 20, 0, 0, rank=0, world_size=3)
    with pytest.raises(ValueError, match="exceeds the 10 training items"):
        global_batch(10, 20, 0, 0)
