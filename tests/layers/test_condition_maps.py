"""Condition maps: a level's grid resampled to every scale, mixed by the routing."""

import pytest
import torch
import torch.nn.functional as F

from mindhier.layers.condition_maps import ConditionMaps, grid_side, resample_matrix
from mindhier.models.routing import routing_weights


@pytest.mark.parametrize("side", [1, 2, 3, 4, 6, 8])
def test_resampling_matrix_is_area_pooling_down_and_bilinear_up(side):
    image_gg = torch.randn(4, 4)
    resampled = (resample_matrix(4, side) @ image_gg.reshape(-1)).reshape(side, side)
    if side <= 4:
        expected = F.adaptive_avg_pool2d(image_gg[None, None], side)[0, 0]
    else:
        expected = F.interpolate(image_gg[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(resampled, expected)
    # every row is a weighted average: a constant map stays constant at every side
    torch.testing.assert_close(resample_matrix(4, side).sum(1), torch.ones(side * side))


def test_a_cell_lands_where_it_is():
    """A bright top-left cell of a 4 × 4 grid brightens the top-left of every finer or coarser scale most."""
    image = torch.zeros(16)
    image[0] = 1.0
    for side in (2, 3, 6, 8):
        resampled = resample_matrix(4, side) @ image
        assert int(resampled.argmax()) == 0, side


def test_routing_weights_follow_the_routing():
    scales = (1, 2, 4, 8)
    coarse = routing_weights("coarse_to_fine", scales, 4)
    assert coarse.shape == (85, 4)
    assert coarse[0].tolist() == [0, 0, 0, 1]  # scale 1 → e_4
    assert coarse[84].tolist() == [1, 0, 0, 0]  # scale 4 → e_1
    assert torch.allclose(routing_weights("all_levels", scales, 4), torch.full((85, 4), 0.25))


def test_maps_need_a_square_grid_and_mix_only_routed_levels():
    with pytest.raises(ValueError, match="square grid"):
        grid_side(6)
    scales = (1, 2, 4)
    torch.manual_seed(0)
    maps = ConditionMaps((3, 5), 5, 8, scales, routing_weights("coarse_to_fine", scales, 2))
    levels = torch.randn(2, 2, 5, 5)
    base = maps(levels)
    assert base.shape == (2, 21, 8)
    changed = levels.clone()
    changed[:, 0, 1:, :3] += 1.0  # level 1's grid (its real 3 channels): routed to the finest scale only
    moved = (maps(changed) - base).abs().amax(dim=(0, 2))
    assert moved[:5].max() == 0 and moved[5:].min() > 0
    padding = levels.clone()
    padding[:, 0, :, 3:] += 1.0  # level 1 is 3 wide: its zero padding is never read
    padding[:, :, 0] += 1.0  # nor the global tokens (they enter through cross-attention)
    torch.testing.assert_close(maps(padding), base)
