"""Metrics: image metrics and feature-space identification as the field computes them, retrieval, probes.

`evaluate(recons, truths, extractors=..., judge=..., labels=...)` scores reconstructions with every metric
and bootstrap confidence intervals (`metrics/suite.py`).
"""

from mindhier.metrics.suite import Evaluation, evaluate

__all__ = ["Evaluation", "evaluate"]
