"""Speed at matched quality, the fair form of the paper's speed claim (issue 28): for each quality metric, the fewest
DDIM steps whose mean score reaches the scale-wise decoder's — or, when no step count on the curve does, the step
count of the best DDIM score (fewest steps on a tie) — and the time ratio DDIM / scale-wise at that point.

All headline metrics here are higher-is-better. Means are compared as they are; their bootstrap intervals are in
the bench record beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def matched_steps(
    curve: Mapping[int, Mapping[str, float]], scale_wise: Mapping[str, float], metrics: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """metric → {scale_wise, ddim_steps, ddim_score, reached} for every metric both sides scored; `curve` maps
    DDIM step counts to their mean scores."""
    matched = {}
    for metric in metrics:
        points = sorted((steps, scores[metric]) for steps, scores in curve.items() if metric in scores)
        if metric not in scale_wise or not points:
            continue
        target = scale_wise[metric]
        reaching = [steps for steps, score in points if score >= target]
        steps = reaching[0] if reaching else max(points, key=lambda point: (point[1], -point[0]))[0]
        matched[metric] = {
            "scale_wise": target,
            "ddim_steps": steps,
            "ddim_score": dict(points)[steps],
            "reached": bool(reaching),
        }
    return matched


def with_time_ratios(
    matched: Mapping[str, Mapping[str, Any]],
    ddim_ms: Mapping[int, Mapping[str, float]],
    scale_wise_ms: Mapping[str, float],
) -> dict[str, dict[str, Any]]:
    """`matched` with, per batch, both decoders' ms/image and the ratio DDIM / scale-wise at the matched steps
    (`ddim_ms`: step count → batch → ms/image, timed alongside `scale_wise_ms`: batch → ms/image)."""
    out = {}
    for metric, point in matched.items():
        ddim = ddim_ms[point["ddim_steps"]]
        out[metric] = {
            **point,
            "ms_per_image": {b: {"ddim": ddim[b], "scale_wise": scale_wise_ms[b]} for b in scale_wise_ms},
            "ratio": {b: round(ddim[b] / scale_wise_ms[b], 2) for b in scale_wise_ms},
        }
    return out
