"""Best-of-N without the ground truth: rank candidates by the brain's own prediction.

The encoder's projected terminal output ê is trained to match the teacher's terminal level of the seen
image. Each candidate image is embedded with the same teacher, and the candidate whose terminal level is
closest (cosine of flattened tokens) to ê is kept. Only brain-derived signals and the candidates enter:
never the test image (the released notebooks of the paper select against the ground truth, docs/method.md §6.5).

Shape letters (docs/glossary.md): B brain inputs, S candidates each, Q tokens, D teacher dim, F flattened
tokens × widths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def select_by_brain(candidates_BS3HW: torch.Tensor, predicted_BQD: torch.Tensor, teacher) -> torch.Tensor:
    """Index [B] of the candidate whose teacher terminal embedding best matches the brain's prediction."""
    b, s = candidates_BS3HW.shape[:2]
    terminal = teacher(candidates_BS3HW.flatten(0, 1))[-1]  # (B·S, Q, D)
    embedded = F.normalize(terminal.flatten(1).float(), dim=-1).view(b, s, -1)
    predicted = F.normalize(predicted_BQD.flatten(1).float(), dim=-1)
    return torch.einsum("bsf,bf->bs", embedded, predicted).argmax(dim=1)
