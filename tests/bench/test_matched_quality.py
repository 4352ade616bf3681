"""Speed at matched quality: the fewest DDIM steps that reach the scale-wise score, else the best DDIM point."""

from mindhier.bench.matched_quality import matched_steps, with_time_ratios

CURVE = {5: {"pixcorr": 0.10, "ssim": 0.30}, 10: {"pixcorr": 0.20, "ssim": 0.31}, 25: {"pixcorr": 0.30, "ssim": 0.32}}
CURVE |= {50: {"pixcorr": 0.31, "ssim": 0.32}, 100: {"pixcorr": 0.29, "ssim": 0.31}}


def test_the_fewest_steps_that_reach_the_scale_wise_score():
    matched = matched_steps(CURVE, {"pixcorr": 0.25, "ssim": 0.5, "judge.colour_f1": 0.4}, ["pixcorr", "ssim"])
    assert matched["pixcorr"] == {"scale_wise": 0.25, "ddim_steps": 25, "ddim_score": 0.30, "reached": True}
    # never reached: the best DDIM score, at its fewest steps (25 and 50 tie at 0.32)
    assert matched["ssim"] == {"scale_wise": 0.5, "ddim_steps": 25, "ddim_score": 0.32, "reached": False}
    assert "judge.colour_f1" not in matched  # only metrics both sides scored


def test_a_score_reached_at_the_first_point_takes_it():
    assert matched_steps(CURVE, {"pixcorr": 0.05}, ["pixcorr"])["pixcorr"]["ddim_steps"] == 5


def test_time_ratios_at_the_matched_steps():
    matched = matched_steps(CURVE, {"pixcorr": 0.25}, ["pixcorr"])
    timed = with_time_ratios(matched, {25: {"1": 50.0, "32": 20.0}}, {"1": 10.0, "32": 4.0})
    assert timed["pixcorr"]["ratio"] == {"1": 5.0, "32": 5.0}
    assert timed["pixcorr"]["ms_per_image"]["1"] == {"ddim": 50.0, "scale_wise": 10.0}
