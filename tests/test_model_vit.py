"""The ViT's padding mask: texts of different heights read in one call, each as if read alone."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ground.errors import InputError
from model.vit import ViT


def tiny(pool: str) -> ViT:
    torch.manual_seed(0)
    arch = {"width": 32, "depth": 2, "heads": 4, "mlp_dim": 64, "patch_size": 8, "image_size": 32}
    return ViT({**arch, "pool": pool, "out_dim": 16}).eval()


NETS = {pool: tiny(pool) for pool in ("map", "gap", "tok")}


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(NETS)),
    st.lists(st.integers(1, 4), min_size=1, max_size=6),
    st.integers(0, 2**31 - 1),
)
def test_padded_rows_change_nothing_a_text_reads(pool: str, counts: list[int], seed: int) -> None:
    net = NETS[pool]
    rows = max(counts)
    # Whatever lies in the padding rows (noise here) must not reach a text's embedding.
    x = torch.randn(len(counts), 3, 8 * rows, 32, generator=torch.Generator().manual_seed(seed))
    alone = torch.cat([net(x[i : i + 1], rows=c) for i, c in enumerate(counts)])
    together = net(x, rows=rows, row_counts=torch.tensor(counts))
    assert torch.allclose(together, alone, atol=1e-5), (together - alone).abs().max()


def test_padding_changes_the_embedding_unless_masked() -> None:
    net = NETS["map"]
    x = torch.randn(2, 3, 32, 32)
    short = net(x[:1], rows=1)
    assert not torch.allclose(net(x[:1], rows=4), short, atol=1e-3)
    assert torch.allclose(net(x[:1], rows=4, row_counts=torch.tensor([1])), short, atol=1e-5)


def test_row_counts_need_the_padded_height() -> None:
    with pytest.raises(InputError, match="row_counts needs rows"):
        NETS["map"](torch.zeros(1, 3, 32, 32), row_counts=torch.tensor([1]))
