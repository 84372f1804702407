"""Classification metrics."""

from __future__ import annotations

import torch


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy in percent. `logits` [N, K], `labels` [N] (int). k is clipped to K."""
    if logits.shape[0] == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = (top == labels.to(top.device).view(-1, 1)).any(dim=1)
    return 100.0 * hit.float().mean().item()
