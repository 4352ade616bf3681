import json
import shutil

import pytest

from mindhier.cli import main

# a tiny demo with the diffusion baseline, timed and scored: minutes on 2 cores, so `make test-slow` (CI runs it)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    shutil.copytree(tiny_demo[0], root / "run")  # the tiny demo's stages are reused; the baseline is trained here
    out = root / "decoders.json"
    args = ["bench", "decoders", "--preset", "tiny", "--run", str(root / "run"), "--out", str(out)]
    # eager only: TorchInductor needs minutes per graph here (compiled = eager tokens is tested in tests/sampling)
    assert main([*args, "--repeats", "1", "--curve-steps", "2", "5", "--no-judge", "--modes", "eager", "--quiet"]) == 0
    return root, json.loads(out.read_text())


def test_times_every_decoder_at_both_batches(bench):
    _, record = bench
    names = [
        "scale-wise",
        "ddim-25",
        "ddim-50",
        "scale-wise, guidance off for the last two scales",
        "scale-wise, pruned to half at the last two scales",
        "scale-wise, pruned to a quarter at the last scale",
    ]
    assert list(record["speed"]) == names
    for name in names:
        assert set(record["speed"][name]) == {"1", "24"}  # the tiny test set has 24 images: batch 32 is capped
        for per_batch in record["speed"][name].values():
            stages = per_batch["stage_seconds"]
            assert per_batch["seconds_per_image"] > 0 and min(stages.values()) > 0
            assert sum(stages.values()) <= per_batch["seconds_per_image"] * per_batch["batch"] * 1.01
            assert per_batch["peak_memory_mib"] > 0
    ratio = record["speed_ratio_diffusion_over_scale_wise"]["ddim-50 / scale-wise"]["1"]
    expected = (
        record["speed"]["ddim-50"]["1"]["seconds_per_image"] / record["speed"]["scale-wise"]["1"]["seconds_per_image"]
    )
    assert ratio == pytest.approx(expected, abs=0.01)
    assert (
        "ddim-50 / scale-wise, pruned to half at the last two scales" in record["speed_ratio_diffusion_over_scale_wise"]
    )
    points = {p["option"]: p for p in record["speed_quality"]}
    assert list(points) == names and not any(p["compiled"] for p in points.values())
    assert points["ddim-50"]["ms_per_image"]["1"] == pytest.approx(
        record["speed"]["ddim-50"]["1"]["seconds_per_image"] * 1e3, abs=1e-3
    )
    assert points["ddim-25"]["metrics"]["pixcorr"] == record["quality"]["ddim-25"]["pixcorr"]["mean"]
    assert record["machine"]["torch_threads"] >= 1 and record["provenance"]["torch"]


def test_scores_every_decoder_and_the_step_curve(bench):
    root, record = bench
    assert set(record["quality_vs_ddim_steps"]) == {"2", "5"}
    for scores in [*record["quality"].values()]:
        assert {"pixcorr", "ssim", "lite0_late.two_way"} <= set(scores)
        assert scores["pixcorr"]["ci95"][0] <= scores["pixcorr"]["mean"] <= scores["pixcorr"]["ci95"][1]
    assert record["scale_wise_point"] == record["quality"]["scale-wise"]
    diffusion = record["models"]["diffusion"]
    assert abs(diffusion["parameter_ratio"] - 1) <= 0.05 and diffusion["steps"] > 0
    assert len(list((root / "decoders_recons" / "recons" / "ddim_5").glob("image_*.png"))) == record["test_images"]
    # the demo run behind it now carries the baseline beside the routings, evaluated and in the report
    run = root / "run"
    metrics = json.loads((run / "eval" / "diffusion" / "metrics.json").read_text())
    assert "diffusion" in metrics["protocol"]["decoder"] and metrics["protocol"]["n_images"] == record["test_images"]
    assert "diffusion" in (run / "report" / "index.html").read_text()


def test_speed_at_matched_quality(bench):
    _, record = bench
    matched = record["matched_quality"]
    assert matched["mode"] == "eager" and set(matched["metrics"]) >= {"pixcorr", "ssim"}
    curve = record["quality_vs_ddim_steps"]
    for metric, point in matched["metrics"].items():
        target = record["scale_wise_point"][metric]["mean"]
        scores = {int(s): q[metric]["mean"] for s, q in curve.items()}
        reaching = sorted(s for s, v in scores.items() if v >= target)
        assert point["reached"] == bool(reaching) and point["scale_wise"] == target
        assert point["ddim_steps"] == (reaching[0] if reaching else max(scores, key=lambda s: (scores[s], -s)))
        for batch, ratio in point["ratio"].items():
            ms = point["ms_per_image"][batch]
            assert ms["ddim"] > 0 and ratio == pytest.approx(ms["ddim"] / ms["scale_wise"], abs=0.01)


def test_the_baselines_oracle_row_stands_beside_the_generators(bench):
    root, _ = bench
    run = root / "run"
    for row in ("teacher_oracle", "diffusion_oracle"):  # both decoders given the test images' teacher features
        assert (run / "eval" / row / "metrics.json").is_file(), row
    inputs = json.loads((run / "diffusion_oracle" / "inputs.json").read_text())
    assert inputs["condition"] == "teacher"  # trained on the teacher's features, never the brain-trained baseline
