import numpy as np
import pytest

from mindhier.train.batches import global_batch, micro_slices, rank_batch


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


def test_rank_slices_concatenate_to_the_global_batch_in_order():
    parts = [rank_batch(100, 20, step=3, seed=1, rank=r, world_size=2) for r in range(2)]
    np.testing.assert_array_equal(np.concatenate(parts), global_batch(100, 20, 3, 1))


def test_micro_slices_cover_the_rows_once():
    assert micro_slices(10, 0) == [slice(0, 10)]
    assert micro_slices(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert micro_slices(4, 8) == [slice(0, 4)]
