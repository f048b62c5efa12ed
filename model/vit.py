"""The one-tower CLIPPO network: a plain ViT that embeds photos and rendered text alike.

The maths follows big_vision's `models/vit.py` and `models/proj/clippo/one_tower.py` so that the
official checkpoints convert one to one: a convolutional patch stem, learned or 2D sin-cos position
embeddings, pre-LayerNorm encoder blocks (LayerNorm eps 1e-6, tanh-approximated GELU), a final
LayerNorm, pooling (`map`, `gap` or `tok`), a linear head to the embedding size, and L2
normalisation z / (||z|| + 1e-8). A learned log-temperature `t` belongs to the model because the
contrastive loss of training needs it.

Build one from the `architecture` dict of a model config:

    net = ViT(VitConfig.from_dict({"variant": "B/16", "image_size": 224, "pool": "map", "out_dim": 768}))
    z = net(pixels)                  # (N, out_dim), rows of unit length
    z = net(pixels, rows=2)          # only the top 2 patch rows are read (text trimming)
    z = net(pixels, rows=3, row_counts=counts)   # text i reads its top counts[i] <= 3 rows (padding)
    logits = net.temperature * z_img @ z_txt.T
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ground.errors import InputError

LAYER_NORM_EPS = 1e-6
NORM_EPS = 1e-8
POSEMB_TYPES = ("learn", "sincos2d")
POOL_TYPES = ("map", "gap", "tok")
_VARIANTS_FILE = Path(__file__).with_name("vit_variants.json")


def _variants() -> dict[str, dict]:
    table = json.loads(_VARIANTS_FILE.read_text())
    return {k: v for k, v in table.items() if not k.startswith("_")}


@dataclass(frozen=True)
class VitConfig:
    """The architecture of a ViT, as stored under `architecture` in a model's config.json."""

    width: int
    depth: int
    heads: int
    mlp_dim: int
    patch_size: int = 16
    image_size: int = 224
    posemb: str = "learn"
    pool: str = "map"
    out_dim: int | None = 768  # None: no head, the pooled width is the embedding
    temperature_init: float = 10.0

    @classmethod
    def from_dict(cls, arch: dict) -> VitConfig:
        """Reads an architecture dict. `variant` ("B/16", "S/32", "Ti/8", ...) fills in the size
        of a named ViT; explicit keys override it."""
        arch = dict(arch)
        variant = arch.pop("variant", None)
        if variant is not None:
            name, _, patch = str(variant).partition("/")
            table = _variants()
            if name not in table:
                raise InputError(f"unknown ViT variant {variant!r}; known sizes: {', '.join(table)}")
            base = dict(table[name])
            if patch:
                base["patch_size"] = int(patch)
            arch = {**base, **arch}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(arch) - known)
        if unknown:
            raise InputError(f"unknown architecture keys {unknown}; expected some of {sorted(known)}")
        missing = sorted(f for f in ("width", "depth", "heads", "mlp_dim") if f not in arch)
        if missing:
            raise InputError(f"architecture lacks {missing} (give them or a 'variant' such as 'B/16')")
        config = cls(**arch)
        config.validate()
        return config

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if self.posemb not in POSEMB_TYPES:
            raise InputError(f"posemb {self.posemb!r}: expected one of {POSEMB_TYPES}")
        if self.pool not in POOL_TYPES:
            raise InputError(f"pool {self.pool!r}: expected one of {POOL_TYPES}")
        if self.width % self.heads:
            raise InputError(f"width {self.width} is not a multiple of heads {self.heads}")
        if self.image_size % self.patch_size:
            raise InputError(f"image_size {self.image_size} is not a multiple of the patch {self.patch_size}")
        if self.posemb == "sincos2d" and self.width % 4:
            raise InputError(f"sincos2d position embeddings need a width divisible by 4, not {self.width}")

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def dim(self) -> int:
        return self.out_dim or self.width


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> Tensor:
    """(1, h*w, width) fixed embeddings, row-major over the patch grid (MoCo v3 layout)."""
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    quarter = width // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / max(quarter - 1, 1))
    x = x.flatten()[:, None] * omega[None]
    y = y.flatten()[:, None] * omega[None]
    pe = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)
    return pe.to(torch.float32)[None]


def _xavier(linear: nn.Linear, blocks: int = 1) -> None:
    """Xavier-uniform init per (in, out) block, as flax initialises separate q/k/v kernels."""
    for chunk in linear.weight.data.chunk(blocks, dim=0):
        nn.init.xavier_uniform_(chunk)


def _lecun_normal(weight: Tensor, fan_in: int) -> None:
    """flax's default kernel init: a normal truncated at 2 sigma, rescaled to variance 1 / fan_in."""
    std = math.sqrt(1 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class MlpBlock(nn.Module):
    def __init__(self, width: int, mlp_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)
        for fc in (self.fc1, self.fc2):
            _xavier(fc)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def _split_heads(x: Tensor, heads: int) -> Tensor:
    n, length, width = x.shape
    return x.view(n, length, heads, width // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    n, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * head_dim)


def _attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """mask: (N, 1, 1, L) bool, False for the keys no query may attend to (padding), or None."""
    # PyTorch's CPU attention backward is 2-6x slower in bf16 than in fp32 at ViT sequence lengths
    # (7-49 tokens, measured on an AVX512-BF16 core), which cancels what bf16 matmuls gain in a
    # training step; so under CPU autocast (which would cast it back) the attention runs in fp32.
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), mask).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, mask)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection (rows: q, then k, then v)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        _xavier(self.qkv, 3)
        _xavier(self.out)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        return self.out(_merge_heads(_attention(q, k, v, mask)))


class EncoderBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = MlpBlock(width, mlp_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class MAPHead(nn.Module):
    """Multihead attention pooling: a learned probe attends to the (already normalised) tokens,
    then h + MLP(LayerNorm(h))."""

    def __init__(self, width: int, heads: int, mlp_dim: int):
        super().__init__()
        self.heads = heads
        self.probe = nn.Parameter(torch.empty(1, 1, width))
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = MlpBlock(width, mlp_dim)
        # flax's xavier_uniform on a (1, 1, d) probe: fan_in 1, fan_out d.
        nn.init.uniform_(self.probe, -math.sqrt(6 / (1 + width)), math.sqrt(6 / (1 + width)))
        _xavier(self.q)
        _xavier(self.kv, 2)
        _xavier(self.out)
        for lin in (self.q, self.kv, self.out):
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        probe = self.probe.expand(x.shape[0], -1, -1)
        q = _split_heads(self.q(probe), self.heads)
        k, v = (_split_heads(t, self.heads) for t in self.kv(x).chunk(2, dim=-1))
        h = self.out(_merge_heads(_attention(q, k, v, mask)))
        h = h + self.mlp(self.norm(h))
        return h[:, 0]


class ViT(nn.Module):
    """Pixels in the model's value range ([-1, 1] for CLIPPO) -> embeddings.

    `forward(pixels, rows=None, normalize=True, row_counts=None)`:
      pixels: (N, 3, H, W) float, H = W = image_size.
      rows: if given, only the top `rows` patch rows (1..grid) are read: the other rows' tokens
        never enter the transformer, and the position embeddings are sliced to match. Used for
        rendered text, whose lower rows are blank; `pixels` may be the full canvas or already
        cropped to rows * patch_size pixels high.
      row_counts: (N,) integers in 1..rows: item i reads only its top row_counts[i] rows; the
        tokens below are padding that no token attends to and pooling leaves out, so item i's
        embedding is the one `rows=row_counts[i]` gives (up to rounding). Lets texts of different
        heights share one call of one shape.
      normalize: True gives rows z / (||z|| + 1e-8); False the raw head output (N, dim).
    `t` is the learned log-temperature; `temperature` = exp(t) scales logits in training.
    """

    def __init__(self, config: VitConfig | dict):
        super().__init__()
        if isinstance(config, dict):
            config = VitConfig.from_dict(config)
        config.validate()
        self.config = config
        c = config
        self.grad_checkpointing = False  # trainers may turn this on to trade compute for memory

        self.stem = nn.Conv2d(3, c.width, kernel_size=c.patch_size, stride=c.patch_size)
        _lecun_normal(self.stem.weight, fan_in=3 * c.patch_size * c.patch_size)
        nn.init.zeros_(self.stem.bias)

        tokens = c.grid * c.grid
        if c.posemb == "learn":
            self.pos_embedding = nn.Parameter(torch.randn(1, tokens, c.width) / math.sqrt(c.width))
        else:
            self.register_buffer("pos_embedding", posemb_sincos_2d(c.grid, c.grid, c.width), persistent=False)
        self.cls = nn.Parameter(torch.zeros(1, 1, c.width)) if c.pool == "tok" else None

        self.blocks = nn.ModuleList(EncoderBlock(c.width, c.heads, c.mlp_dim) for _ in range(c.depth))
        self.encoder_norm = nn.LayerNorm(c.width, eps=LAYER_NORM_EPS)
        self.map_head = MAPHead(c.width, c.heads, c.mlp_dim) if c.pool == "map" else None
        if c.out_dim:
            self.head = nn.Linear(c.width, c.out_dim)
            _lecun_normal(self.head.weight, fan_in=c.width)
            nn.init.zeros_(self.head.bias)
        else:
            self.head = None
        self.t = nn.Parameter(torch.full((1,), math.log(c.temperature_init)))

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def temperature(self) -> Tensor:
        return self.t.exp()

    def tokens(self, pixels: Tensor, rows: int | None = None) -> Tensor:
        """Patch tokens plus position embeddings, (N, rows * grid, width)."""
        c = self.config
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise InputError(f"pixels must be (N, 3, H, W), not {tuple(pixels.shape)}")
        if rows is None:
            rows = c.grid
            expected = (c.image_size, c.image_size)
        else:
            if not 1 <= rows <= c.grid:
                raise InputError(f"rows={rows} is outside 1..{c.grid}")
            expected = (rows * c.patch_size, c.image_size)
            pixels = pixels[:, :, : expected[0]]
        if tuple(pixels.shape[2:]) != expected:
            raise InputError(f"pixels are {tuple(pixels.shape[2:])} high x wide; the model reads {expected}")
        x = self.stem(pixels).flatten(2).transpose(1, 2)
        return x + self.pos_embedding[:, : x.shape[1]].to(x.dtype)

    def token_mask(self, row_counts: Tensor, rows: int) -> Tensor:
        """(N, L) bool: which tokens of items reading `row_counts` of `rows` patch rows are real
        (the class token, if any, always is)."""
        token_row = torch.arange(rows * self.config.grid, device=row_counts.device) // self.config.grid
        real = token_row[None, :] < row_counts[:, None]
        if self.cls is not None:
            real = torch.cat([real.new_ones(len(real), 1), real], dim=1)
        return real

    def encode(self, pixels: Tensor, rows: int | None = None, mask: Tensor | None = None) -> Tensor:
        """The transformer's normalised output tokens (N, L, width); with `tok` the class token first.
        mask: (N, L) bool from `token_mask`, or None when every token is real."""
        x = self.tokens(pixels, rows)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        keys = None if mask is None else mask[:, None, None, :]
        for block in self.blocks:
            if self.grad_checkpointing and self.training and x.requires_grad:
                x = checkpoint(block, x, keys, use_reentrant=False)
            else:
                x = block(x, keys)
        return self.encoder_norm(x)

    def pool(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.map_head is not None:
            return self.map_head(x, None if mask is None else mask[:, None, None, :])
        if self.cls is not None:
            return x[:, 0]
        if mask is None:
            return x.mean(dim=1)
        weights = mask.to(x.dtype)[:, :, None]
        return (x * weights).sum(dim=1) / weights.sum(dim=1)

    def forward(
        self,
        pixels: Tensor,
        rows: int | None = None,
        normalize: bool = True,
        row_counts: Tensor | None = None,
    ) -> Tensor:
        if row_counts is not None and rows is None:
            raise InputError("row_counts needs rows, the patch rows of the (padded) input")
        mask = None if row_counts is None else self.token_mask(row_counts, rows)
        z = self.pool(self.encode(pixels, rows, mask), mask)
        if self.head is not None:
            z = self.head(z)
        if normalize:
            z = l2_normalize(z)
        return z


def l2_normalize(z: Tensor) -> Tensor:
    """z / (||z|| + 1e-8), in float32 whatever z's dtype."""
    z = z.float()
    return z / (z.norm(dim=-1, keepdim=True) + NORM_EPS)
