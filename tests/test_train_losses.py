"""Contrastive losses and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import ContrastiveLoss
from training.schedule import lr_factor


def unit(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_softmax_loss_with_distinct_keys_is_clip_cross_entropy() -> None:
    left, right, t = unit(6), unit(6, seed=1), torch.tensor([math.log(10.0)])
    keys = torch.arange(6)
    logits = 10 * left @ right.T
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert ContrastiveLoss("softmax")(left, right, keys, keys, t).item() == pytest.approx(
        expected.item(), rel=1e-5
    )


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_captions_of_one_image_are_pulled_together_not_apart(kind: str) -> None:
    t = torch.tensor([math.log(10.0)])
    loss = ContrastiveLoss(kind, bias_init=0.0)

    def similarity_after_a_step(keys: list[int]) -> float:
        # Two captions of one image (equal keys) or of two images: one gradient step on them.
        left = unit(2).requires_grad_()
        loss(left, left.detach(), torch.tensor(keys), torch.tensor(keys), t).backward()
        moved = F.normalize((left - 0.1 * left.grad).detach(), dim=1)
        return float(moved[0] @ moved[1])

    before = float(unit(2)[0] @ unit(2)[1])
    assert similarity_after_a_step([0, 0]) > before > similarity_after_a_step([0, 1])


def test_sigmoid_loss_matches_its_formula_and_learns_a_bias() -> None:
    left, right, t = unit(4), unit(4, seed=1), torch.tensor([math.log(10.0)])
    keys = torch.tensor([0, 1, 2, 2])
    loss = ContrastiveLoss("sigmoid", bias_init=-10.0)
    logits = 10 * left @ right.T - 10
    labels = (keys[:, None] == keys[None, :]).float() * 2 - 1
    expected = -F.logsigmoid(labels * logits).sum() / 4
    value = loss(left, right, keys, keys, t)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    value.backward()
    assert loss.bias.grad is not None and loss.bias.grad.abs().item() > 0


def test_temperature_is_capped() -> None:
    left = unit(3)
    loss = ContrastiveLoss("softmax", max_temperature=20.0)
    capped = loss.logits(left, left, torch.tensor([math.log(1000.0)]))
    assert torch.allclose(capped, 20 * left @ left.T, atol=1e-5)


def test_schedules() -> None:
    cosine = [lr_factor(s, total=100, kind="cosine", warmup=10) for s in range(100)]
    assert cosine[0] == pytest.approx(0.1) and cosine[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(cosine[9:], cosine[10:], strict=False))
    assert cosine[-1] < 0.01
    floor = lr_factor(99, total=100, kind="cosine", warmup=10, end_fraction=0.1)
    assert floor == pytest.approx(0.1, abs=0.01)
    rsqrt = [lr_factor(s, total=100, kind="rsqrt", warmup=10) for s in (9, 39, 99)]
    assert rsqrt == pytest.approx([1.0, 0.5, math.sqrt(0.1)])
    assert lr_factor(50, total=100, kind="constant", warmup=10) == 1.0
