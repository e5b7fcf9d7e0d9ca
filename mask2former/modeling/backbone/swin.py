"""Swin Transformer backbone as wrapped by Mask2Former (``D2SwinTransformer``).

Follows the detection / segmentation variant of Swin (Liu et al. 2021) that Mask2Former
uses: every stage pads its token map to a multiple of the window size, shifted-window
blocks use the cyclic-shift attention mask (-100 between tokens of different regions),
and each output stage has its own LayerNorm ``norm{i}``. Parameter names are the official
ones (``patch_embed.proj``, ``layers.{i}.blocks.{j}.attn.relative_position_bias_table``,
``layers.{i}.downsample.reduction``, ``norm{i}``, ...), so official checkpoints load unchanged.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils import checkpoint

from ...config import configurable
from ...layers import ShapeSpec
from ...utils.env import cached_unless_capturing, capturing_graph
from ..build import BACKBONE_REGISTRY
from .backbone import Backbone

__all__ = [
    "DropPath", "Mlp", "WindowAttention", "SwinTransformerBlock", "PatchMerging", "BasicLayer",
    "PatchEmbed", "D2SwinTransformer", "window_partition", "window_reverse",
    "shifted_window_mask", "window_token_index",
]

_MASK_VALUE = -100.0  # the official code's "masked" attention logit (not -inf)


class DropPath(nn.Module):
    """Stochastic depth: drop whole residual branches per sample while training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = x.new_empty(shape).bernoulli_(keep_prob)
        return x * keep.div_(keep_prob)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws, ws, C), windows of one image contiguous."""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, C)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws, ws, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window_size, W // window_size, window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, H, W, C)


def _window_token_index(H: int, W: int, window_size: int, shift_size: int,
                        device: Optional[torch.device]) -> Tuple[torch.Tensor, torch.Tensor]:
    ws, s = window_size, shift_size
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    # window order: windows row-major, tokens row-major inside a window; (Y, X) on the shifted map
    k = torch.arange(Hp * Wp, device=device)
    window, inside = k // (ws * ws), k % (ws * ws)
    Y = (window // (Wp // ws)) * ws + inside // ws
    X = (window % (Wp // ws)) * ws + inside % ws
    y, x = (Y + s) % Hp, (X + s) % Wp  # torch.roll(-s): shifted[Y, X] = padded[Y + s, X + s]
    into_windows = torch.where((y < H) & (x < W), y * W + x, H * W)  # (Hp*Wp,)
    y, x = torch.arange(H, device=device)[:, None], torch.arange(W, device=device)[None, :]
    Y, X = (y - s) % Hp, (x - s) % Wp  # where token (y, x) sits on the shifted map
    from_windows = ((Y // ws) * (Wp // ws) + X // ws) * (ws * ws) + (Y % ws) * ws + X % ws
    return into_windows, from_windows.flatten()  # (H*W,)


_TOKEN_INDEX_CACHE: Dict[Tuple[int, int, int, int, str], Tuple[torch.Tensor, torch.Tensor]] = {}


def window_token_index(H: int, W: int, window_size: int, shift_size: int = 0,
                       device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gather indices of a (shifted-)window attention block over an H x W token map.

    Returns ``into_windows`` (Hp*Wp,) and ``from_windows`` (H*W,), int64, such that for tokens
    ``x`` (B, H*W, C) with one zero token appended, ``x_ext[:, into_windows]`` equals the
    official ``window_partition(roll(pad(x), -shift))`` flattened to (B, nW*ws*ws, C) (padding
    positions read the zero token), and ``windows[:, from_windows]`` undoes it (the official
    ``window_reverse``, roll back and crop). Cached per size in eager mode.
    """
    def compute():
        return _window_token_index(H, W, window_size, shift_size, device)

    if not all(isinstance(v, int) for v in (H, W)):  # symbolic sizes
        return compute()
    key = (H, W, window_size, shift_size, str(device))
    return cached_unless_capturing(_TOKEN_INDEX_CACHE, key, compute, max_entries=64)


def _relative_position_index(window_size: int) -> torch.Tensor:
    """(ws*ws, ws*ws) int64 index into the (2ws-1)^2 relative-position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                        indexing="ij")).flatten(1)  # (2, ws*ws)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 2)
    relative = relative + (window_size - 1)  # shift to start from 0
    return relative[:, :, 0] * (2 * window_size - 1) + relative[:, :, 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.dim = dim
        self.window_size = (window_size, window_size)
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )  # ((2ws-1)^2, nH)
        self.register_buffer("relative_position_index", _relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B*nW, N, C); mask: (nW, N, N) of 0 / -100, or None."""
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*nW, nH, N, hd)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(N, N, -1).permute(2, 0, 1).unsqueeze(0)  # (1, nH, N, N)
        fused = not torch.is_grad_enabled() and not capturing_graph() and not (self.training and self.attn_drop.p > 0)
        if fused:
            # Eager inference: one fused kernel (the same attention up to float rounding, ~1e-6).
            # Exported graphs keep the step-by-step form (the ONNX exporter mis-handles the
            # strides of the fused op's output).
            if mask is not None:
                nW = mask.shape[0]
                bias = (bias + mask[:, None]).repeat(B_ // nW, 1, 1, 1)  # (B*nW, nH, N, N)
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        else:  # training and graph capture: the official computation, step by step
            attn = (q * self.scale) @ k.transpose(-2, -1) + bias  # (B*nW, nH, N, N)
            if mask is not None:
                nW = mask.shape[0]
                attn = attn.view(B_ // nW, nW, self.num_heads, N, N) + mask[None, :, None]
                attn = attn.view(-1, self.num_heads, N, N)
            x = self.attn_drop(attn.softmax(dim=-1)) @ v  # (B*nW, nH, N, hd)
        x = x.transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention and an MLP, each pre-normed with a residual connection."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift_size: int = 0,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size={shift_size} must be in [0, window_size={window_size})")
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias=qkv_bias,
                                    qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, H: int, W: int,
                attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (B, H*W, C); attn_mask: (nW, ws*ws, ws*ws) for the padded map (shifted blocks)."""
        B, L, C = x.shape
        if L != H * W:
            raise ValueError(f"Swin block got {L} tokens for a {H}x{W} map")
        ws = self.window_size
        if self.shift_size == 0:
            attn_mask = None
        # One gather does the official pad + cyclic shift + window partition (and one gathers
        # back): the same tokens in the same order, without the intermediate copies.
        into_windows, from_windows = window_token_index(H, W, ws, self.shift_size, x.device)
        shortcut = x
        x = F.pad(self.norm1(x), (0, 0, 0, 1))  # (B, H*W + 1, C); the last token is the zero padding
        windows = x.index_select(1, into_windows).view(-1, ws * ws, C)  # (B*nW, ws*ws, C)
        windows = self.attn(windows, mask=attn_mask)
        x = windows.view(B, -1, C).index_select(1, from_windows)  # (B, H*W, C)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens -> one token: (B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), 2C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, L, C = x.shape
        if L != H * W:
            raise ValueError(f"PatchMerging got {L} tokens for a {H}x{W} map")
        x = x.view(B, H, W, C)
        if H % 2 == 1 or W % 2 == 1:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x0 = x[:, 0::2, 0::2, :]
        x1 = x[:, 1::2, 0::2, :]
        x2 = x[:, 0::2, 1::2, :]
        x3 = x[:, 1::2, 1::2, :]
        x = torch.cat([x0, x1, x2, x3], -1).view(B, -1, 4 * C)  # (B, H/2*W/2, 4C)
        return self.reduction(self.norm(x))


def shifted_window_mask(H: int, W: int, window_size: int, shift_size: int,
                        device: Optional[torch.device] = None) -> torch.Tensor:
    """(nW, ws*ws, ws*ws) additive mask (0 / -100) for the cyclically shifted padded map."""
    Hp = -(-H // window_size) * window_size
    Wp = -(-W // window_size) * window_size
    img_mask = torch.zeros((1, Hp, Wp, 1), device=device)
    slices = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    region = 0
    for h in slices:
        for w in slices:
            img_mask[:, h, w, :] = region
            region += 1
    mask_windows = window_partition(img_mask, window_size).view(-1, window_size * window_size)
    diff = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)  # (nW, N, N)
    return torch.zeros_like(diff).masked_fill(diff != 0, _MASK_VALUE)


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks (odd ones shifted) and an optional PatchMerging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: Sequence[float] = (),
                 downsample: bool = False, use_checkpoint: bool = False):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        drop_path = list(drop_path) or [0.0] * depth
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim, num_heads, window_size=window_size,
                                 shift_size=0 if i % 2 == 0 else window_size // 2,
                                 mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                 drop=drop, attn_drop=attn_drop, drop_path=drop_path[i])
            for i in range(depth)
        ])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, H: int, W: int
                ) -> Tuple[torch.Tensor, int, int, torch.Tensor, int, int]:
        """(B, H*W, C) -> (stage output, H, W, input of next stage, H', W')."""
        attn_mask = None
        if len(self.blocks) > 1 and self.shift_size > 0:  # only shifted (odd) blocks use it
            attn_mask = shifted_window_mask(H, W, self.window_size, self.shift_size, x.device)
            attn_mask = attn_mask.to(x.dtype)
        for blk in self.blocks:
            if self.use_checkpoint and x.requires_grad:
                x = checkpoint.checkpoint(blk, x, H, W, attn_mask, use_reentrant=False)
            else:
                x = blk(x, H, W, attn_mask)
        if self.downsample is None:
            return x, H, W, x, H, W
        return x, H, W, self.downsample(x, H, W), (H + 1) // 2, (W + 1) // 2


class PatchEmbed(nn.Module):
    """Non-overlapping patch_size x patch_size patches -> embed_dim channels (+ LayerNorm)."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96,
                 patch_norm: bool = True):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, ceil(H/p), ceil(W/p)); the image is zero-padded to p."""
        _, _, H, W = x.shape
        ph, pw = self.patch_size
        x = F.pad(x, (0, (pw - W % pw) % pw, 0, (ph - H % ph) % ph))
        x = self.proj(x)
        if self.norm is not None:
            Wh, Ww = x.shape[2], x.shape[3]
            x = self.norm(x.flatten(2).transpose(1, 2))
            x = x.transpose(1, 2).reshape(-1, self.embed_dim, Wh, Ww)
        return x


@BACKBONE_REGISTRY.register()
class D2SwinTransformer(Backbone):
    """Swin Transformer returning ``res2..res5`` (strides 4..32, channels C, 2C, 4C, 8C)."""

    @configurable
    def __init__(self, *, pretrain_img_size: int = 224, patch_size: int = 4, in_chans: int = 3,
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2,
                 ape: bool = False, patch_norm: bool = True,
                 out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
                 use_checkpoint: bool = False):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"Swin depths={list(depths)} and num_heads={list(num_heads)} "
                             "(MODEL.SWIN.DEPTHS / NUM_HEADS) must have the same length")
        self.num_layers = len(depths)
        available = [f"res{i + 2}" for i in range(self.num_layers)]
        for name in out_features:
            if name not in available:
                raise ValueError(f"Swin out feature {name!r} (MODEL.SWIN.OUT_FEATURES) is not "
                                 f"one of {available}")
        for dim_i, heads in ((embed_dim * 2 ** i, h) for i, h in enumerate(num_heads)):
            if dim_i % heads:
                raise ValueError(f"Swin stage width {dim_i} is not divisible by {heads} heads "
                                 "(MODEL.SWIN.EMBED_DIM / NUM_HEADS)")
        self.embed_dim = embed_dim
        self.ape = ape
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        if ape:
            grid = (pretrain_img_size // patch_size, pretrain_img_size // patch_size)
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *grid))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)

        # Stochastic-depth rate grows linearly over all blocks (computed on CPU, also under meta).
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            start = sum(depths[:i])
            self.layers.append(BasicLayer(
                int(embed_dim * 2 ** i), depths[i], num_heads[i], window_size=window_size,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate,
                attn_drop=attn_drop_rate, drop_path=rates[start:start + depths[i]],
                downsample=i < self.num_layers - 1, use_checkpoint=use_checkpoint,
            ))
        self.num_features = [int(embed_dim * 2 ** i) for i in range(self.num_layers)]
        for i, channels in enumerate(self.num_features):  # one output norm per stage
            self.add_module(f"norm{i}", nn.LayerNorm(channels))

        self._out_features = list(out_features)
        self._out_feature_strides = {f"res{i + 2}": patch_size * 2 ** i
                                     for i in range(self.num_layers)}
        self._out_feature_channels = {f"res{i + 2}": c for i, c in enumerate(self.num_features)}

    @classmethod
    def from_config(cls, cfg, input_shape: Optional[ShapeSpec] = None) -> dict:
        swin = cfg.MODEL.SWIN
        return dict(
            pretrain_img_size=swin.PRETRAIN_IMG_SIZE, patch_size=swin.PATCH_SIZE, in_chans=3,
            embed_dim=swin.EMBED_DIM, depths=list(swin.DEPTHS), num_heads=list(swin.NUM_HEADS),
            window_size=swin.WINDOW_SIZE, mlp_ratio=swin.MLP_RATIO, qkv_bias=swin.QKV_BIAS,
            qk_scale=swin.QK_SCALE, drop_rate=swin.DROP_RATE, attn_drop_rate=swin.ATTN_DROP_RATE,
            drop_path_rate=swin.DROP_PATH_RATE, ape=swin.APE, patch_norm=swin.PATCH_NORM,
            out_features=list(swin.OUT_FEATURES), use_checkpoint=swin.USE_CHECKPOINT,
        )

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(B, 3, H, W) -> {"res2": (B, C, H/4, W/4), ..., "res5": (B, 8C, H/32, W/32)}."""
        if x.dim() != 4:
            raise ValueError(f"SwinTransformer takes an input of shape (N, C, H, W); "
                             f"got {tuple(x.shape)}")
        x = self.patch_embed(x)  # (B, C, Wh, Ww)
        Wh, Ww = x.shape[2], x.shape[3]
        if self.ape:
            pos = F.interpolate(self.absolute_pos_embed, size=(Wh, Ww), mode="bicubic")
            x = x + pos
        x = self.pos_drop(x.flatten(2).transpose(1, 2))  # (B, Wh*Ww, C)

        outputs = {}
        for i, layer in enumerate(self.layers):
            x_out, H, W, x, Wh, Ww = layer(x, Wh, Ww)
            name = f"res{i + 2}"
            if name in self._out_features:
                x_out = getattr(self, f"norm{i}")(x_out)
                x_out = x_out.view(-1, H, W, self.num_features[i])  # (B, H, W, C_i)
                outputs[name] = x_out.permute(0, 3, 1, 2).contiguous()  # (B, C_i, H, W)
        return outputs

    @property
    def size_divisibility(self) -> int:
        return 32

