"""Contrastive losses over a batch of (left, right) embedding pairs, with a learned temperature.

Both take unit-length embeddings `left` (N, d) and `right` (M, d) and the key of every item: items
with equal keys are positives of each other (the diagonal always is), so two captions of one image
in one batch are not pushed apart.

- softmax (CLIP, CLIPPO): cross-entropy of each row of logits = T * left @ right.T against the
  uniform distribution over its positives, and the same over columns; the mean of both.
- sigmoid (SigLIP): every cell is a binary decision, logits = T * left @ right.T + b with a learned
  bias b; the loss is -sum(log sigmoid(label * logits)) / N, label +1 for positives, -1 otherwise.

The temperature T = exp(t) is the model's `t` (it belongs to the network so it is saved with it);
the sigmoid bias is the loss's own parameter, saved in training checkpoints only: retrieval ranks
by similarity, which the bias does not change.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def positives(left_keys: Tensor, right_keys: Tensor) -> Tensor:
    """(N, M) bool: left item i and right item j show the same thing."""
    return left_keys[:, None] == right_keys[None, :]


def softmax_loss(logits: Tensor, positive: Tensor) -> Tensor:
    target = positive.float()
    rows = -(target / target.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    cols = -(target / target.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return (rows + cols) / 2


def sigmoid_loss(logits: Tensor, positive: Tensor) -> Tensor:
    labels = positive.float() * 2 - 1
    return -F.logsigmoid(labels * logits).sum() / logits.shape[0]


class ContrastiveLoss(nn.Module):
    def __init__(self, kind: str = "softmax", bias_init: float = -10.0, max_temperature: float = 100.0):
        super().__init__()
        if kind not in ("softmax", "sigmoid"):
            raise ValueError(f"unknown contrastive loss {kind!r}")
        self.kind = kind
        self.log_max_temperature = math.log(max_temperature)
        self.bias = nn.Parameter(torch.full((1,), float(bias_init))) if kind == "sigmoid" else None

    def logits(self, left: Tensor, right: Tensor, t: Tensor) -> Tensor:
        scale = t.clamp(max=self.log_max_temperature).exp()
        logits = scale * left.float() @ right.float().T
        return logits + self.bias if self.bias is not None else logits

    def forward(
        self, left: Tensor, right: Tensor, left_keys: Tensor, right_keys: Tensor, t: Tensor
    ) -> Tensor:
        logits = self.logits(left, right, t)
        positive = positives(left_keys.to(logits.device), right_keys.to(logits.device))
        if self.kind == "softmax":
            return softmax_loss(logits, positive)
        return sigmoid_loss(logits, positive)
