"""The report's decoder speed-quality section: the table, the log-ms scatter plots, the record check, and
`mindhier report --bench` refusing a wrong file before writing anything."""

from __future__ import annotations

import itertools
import json
import math
import re
import xml.etree.ElementTree as ET

import pytest

from mindhier.cli import main
from mindhier.errors import DataError
from mindhier.report.speed_quality import CHAR_WIDTH, place_labels, speed_quality_section, validate_decoders_record

SVG = "{http://www.w3.org/2000/svg}"
ODD_NAME = "scale-wise <compiled> & 'fast'"  # must come out escaped, in the table and on the plots


def _point(option, family, ms_1, ms_32, pixcorr, lite0=None, compiled=False):
    metrics = {"pixcorr": pixcorr, "ssim": 0.25}
    if lite0 is not None:
        metrics["lite0_late.two_way"] = lite0
    return {
        "option": option,
        "family": family,
        "compiled": compiled,
        "ms_per_image": {"1": ms_1, "32": ms_32},
        "metrics": metrics,
    }


def _record():
    return {
        "benchmark": "decoders",
        "split": "test",
        "protocol": "single shot (N = 1), per-image seeds",
        "repeats": 3,
        "machine": {"processor": "x86_64", "cpu_count": 16, "torch_threads": 4, "cuda": False},
        "provenance": {"torch": "2.4.0"},
        "speed_ratio_diffusion_over_scale_wise": {"ddim-25 / scale-wise": {"1": 3.21, "32": 5.5}},
        "speed_quality": [
            _point("scale-wise", "scale-wise", 2.0, 0.512, 0.12345, lite0=0.61),
            _point(ODD_NAME, "scale-wise", 20.0, 0.9, 0.2, lite0=0.7, compiled=True),
            _point("ddim-25", "ddim", 200.0, 12.34, 0.3, lite0=0.8),
            _point("ddim-50", "ddim", 400.0, 25.0, 0.31),  # no Lite0 score: in the table, not on that plot
        ],
    }


def _plots(section: str) -> dict[str, list[dict]]:
    """aria-label -> the plotted points (option, ms, value, cx, cy) of every SVG in the section."""
    plots = {}
    for text in re.findall(r"<svg .*?</svg>", section, flags=re.S):
        svg = ET.fromstring(text)
        points = []
        for group in svg.iter(f"{SVG}g"):
            circle = group.find(f"{SVG}circle")
            points.append(
                {
                    "option": group.get("data-option"),
                    "ms": float(group.get("data-ms")),
                    "value": float(group.get("data-value")),
                    "cx": float(circle.get("cx")),
                    "cy": float(circle.get("cy")),
                }
            )
        plots[svg.get("aria-label")] = points
    return plots


def _table_rows(section: str) -> list[list[str]]:
    table = re.search(r"<table>.*?</table>", section, flags=re.S).group(0)
    return [re.findall(r"<t[dh]>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)]


def test_the_table_has_every_point_with_its_times_and_the_metrics_some_point_has():
    section = speed_quality_section(_record())
    head, *rows = _table_rows(section)
    assert head == [
        "option",
        "family",
        "compiled",
        "ms/image, batch 1",
        "ms/image, batch 32",
        "PixCorr",
        "SSIM",
        "Lite0-late 2-way, proxy",
    ]  # Lite2-early and the judge are in no point, so they get no column
    assert [r[0] for r in rows] == [
        "scale-wise",
        "scale-wise &lt;compiled&gt; &amp; &#x27;fast&#x27;",
        "ddim-25",
        "ddim-50",
    ]
    assert rows[0][1:] == ["scale-wise", "no", "2.0", "0.5", "0.123", "0.250", "0.610"]
    assert rows[1][2] == "yes" and rows[2][4] == "12.3"
    assert rows[3][-1] == "—"  # ddim-50 has no Lite0 score: shown as absent, not as a number
    assert ODD_NAME not in section  # nothing unescaped


def test_every_option_is_plotted_except_where_it_lacks_the_metric():
    plots = _plots(speed_quality_section(_record()))
    assert set(plots) == {
        f"{metric} against ms/image at batch {batch} (log scale)"
        for metric in ("PixCorr", "Lite0-late 2-way, proxy")
        for batch in ("1", "32")
    }
    every = {"scale-wise", ODD_NAME, "ddim-25", "ddim-50"}
    for label, points in plots.items():
        options = {p["option"] for p in points}
        assert options == (every if label.startswith("PixCorr") else every - {"ddim-50"})


def test_x_is_log_ms_and_y_rises_with_the_metric():
    plots = _plots(speed_quality_section(_record()))
    for points in plots.values():
        by_ms = sorted(points, key=lambda p: p["ms"])
        assert all(a["cx"] < b["cx"] for a, b in itertools.pairwise(by_ms))
        by_value = sorted(points, key=lambda p: p["value"])
        assert all(a["cy"] > b["cy"] for a, b in itertools.pairwise(by_value))  # SVG y grows downwards
    # at batch 1 the times are 2, 20, 200, 400 ms: equal ratios are equal distances on a log axis
    cx = {p["ms"]: p["cx"] for p in plots["PixCorr against ms/image at batch 1 (log scale)"]}
    assert cx[20.0] - cx[2.0] == pytest.approx(cx[200.0] - cx[20.0], abs=0.02)
    assert cx[400.0] - cx[200.0] == pytest.approx((cx[20.0] - cx[2.0]) * math.log10(2), abs=0.02)


def test_labels_of_crowded_points_stay_apart_and_inside_the_plot():
    box = (58.0, 30.0, 504.0, 254.0)
    centres = [(120.0, 100.0)] * 3 + [(130.0, 104.0), (125.0, 96.0), (500.0, 30.0), (500.0, 254.0)]
    labels = ["scale-wise", "scale-wise, compiled", "pruned to half", "pruned to a quarter", "ddim-25", "a", "b"]
    rects = []
    for (text_x, baseline, anchor), label in zip(place_labels(centres, labels, box), labels, strict=True):
        x0 = text_x - CHAR_WIDTH * len(label) if anchor == "end" else text_x
        rects.append((x0, baseline - 9, x0 + CHAR_WIDTH * len(label), baseline + 2))
    for k, a in enumerate(rects):
        assert box[0] <= a[0] and a[2] <= box[2] and box[1] <= a[1] and a[3] <= box[3]
        for b in rects[k + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_the_caption_states_split_protocol_machine_and_speed_ratios():
    caption = re.search(r"<p class=note>(.*?)</p>", speed_quality_section(_record())).group(1)
    for fact in (
        "Split test",
        "per-image seeds",
        "x86_64",
        "16 cores",
        "4 torch threads",
        "torch 2.4.0",
        "median of 3",
    ):
        assert fact in caption
    assert "ddim-25 / scale-wise: batch 1 ×3.21, batch 32 ×5.5" in caption


def test_a_record_before_json_with_int_batch_sizes_renders_as_after():
    record = _record()
    for point in record["speed_quality"]:
        point["ms_per_image"] = {int(b): ms for b, ms in point["ms_per_image"].items()}
    assert speed_quality_section(validate_decoders_record(record, "in memory")) == speed_quality_section(_record())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.update(benchmark="sampler"), "not a `mindhier bench decoders` result (benchmark = 'sampler')"),
        (lambda r: r.pop("speed_quality"), "no speed_quality list"),
        (lambda r: r["speed_quality"][2].pop("metrics"), "speed_quality[2] needs 'metrics' as dict (missing)"),
        (lambda r: r["speed_quality"][0].update(family="gan"), "family 'gan'"),
        (lambda r: r["speed_quality"][1]["ms_per_image"].update({"1": 0}), "positive ms"),
    ],
)
def test_a_wrong_record_is_one_line_naming_the_file(change, expected, tmp_path):
    record = _record()
    change(record)
    path = tmp_path / "bench_sampler.json"
    with pytest.raises(DataError) as raised:
        validate_decoders_record(record, path)
    message = str(raised.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_report_with_bench_appends_the_section_after_the_runs(tmp_path):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)  # a run folder with no evaluations: the cheapest the report accepts
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(_record()))
    assert main(["report", str(run), "--out", str(tmp_path / "report"), "--bench", str(bench)]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.index(f"<h2>{run}</h2>") < page.index("<h2>Decoder speed and quality</h2>")
    assert page.count("<svg ") == 4


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (json.dumps({"benchmark": "sampler"}), "(benchmark = 'sampler')"),
        ('{"benchmark": "decoders", ', "is not valid JSON"),
        (None, "not found"),
    ],
)
def test_report_with_a_bad_bench_file_exits_with_one_line_and_writes_nothing(content, expected, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(_record()))
    if content is not None:
        bad.write_text(content)
    before = sorted(tmp_path.rglob("*"))
    code = main(["report", str(run), "--out", str(tmp_path / "report"), "--bench", str(good), "--bench", str(bad)])
    assert code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and expected in lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # no report folder, staging folder or lock left behind


def test_speed_at_matched_quality_is_a_table_and_plotted_points():
    record = _record()
    record["quality_vs_ddim_steps"] = {
        "10": {"pixcorr": {"mean": 0.13, "ci95": [0.1, 0.16]}, "ssim": {"mean": 0.2, "ci95": [0.1, 0.3]}},
        "25": {"pixcorr": {"mean": 0.3, "ci95": [0.2, 0.4]}, "ssim": {"mean": 0.25, "ci95": [0.2, 0.3]}},
    }
    ms = {"1": {"ddim": 80.0, "scale_wise": 2.0}, "32": {"ddim": 5.0, "scale_wise": 0.5}}
    record["matched_quality"] = {
        "mode": "eager",
        "metrics": {
            "pixcorr": {
                "scale_wise": 0.12,
                "ddim_steps": 10,
                "ddim_score": 0.13,
                "reached": True,
                "ms_per_image": ms,
                "ratio": {"1": 40.0, "32": 10.0},
            },
            "ssim": {
                "scale_wise": 0.3,
                "ddim_steps": 25,
                "ddim_score": 0.25,
                "reached": False,
                "ms_per_image": {b: {**v, "ddim": 2 * v["ddim"]} for b, v in ms.items()},
                "ratio": {"1": 80.0, "32": 20.0},
            },
        },
    }
    section = speed_quality_section(record)
    matched = re.search(r"<h3>Speed at matched quality</h3>\s*(<table>.*?</table>)", section, flags=re.S).group(1)
    rows = [re.findall(r"<t[dh]>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", matched)]
    assert rows[1] == ["PixCorr", "0.120", "10", "0.130", "40.00", "10.00"]
    assert rows[2][2] == "25 (never reaches; best point)"
    plotted = {p["option"]: p for p in _plots(section)["PixCorr against ms/image at batch 1 (log scale)"]}
    assert (
        plotted["ddim-10, matched on pixcorr"]["ms"] == 80.0 and plotted["ddim-10, matched on pixcorr"]["value"] == 0.13
    )
    assert plotted["ddim-25, matched on ssim"]["ms"] == 160.0
