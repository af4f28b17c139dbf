"""Building blocks shared by every transformer in the engine (talker, code predictor,
codec decoder and encoder transformers): RMSNorm and rotary embeddings; and the CPU
bfloat16 linear packing.

Numerics follow the official code: norms and RoPE tables are computed in float32 and cast
back, so bf16 runs stay close to the float32 reference.
"""
from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_inv_freq(head_dim: int, theta: float, device=None) -> torch.Tensor:
    """Inverse frequencies of the default (unscaled) rotary embedding."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))


def rope_cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor, dtype: torch.dtype):
    """cos/sin tables for 1-D integer positions [T] (or [B, T]) -> [..., T, head_dim]."""
    freqs = positions.float()[..., None] * inv_freq.float().to(positions.device)  # [..., T, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, T, D]; cos/sin: [T, D] or [B, T, D] (broadcast over heads)."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


# --- CPU bfloat16 linears ----------------------------------------------------------------


def cpu_bf16_packing_available() -> bool:
    """Whether oneDNN can run pre-packed bfloat16 linears on this CPU."""
    ops = getattr(torch.ops, "mkldnn", None)
    return (torch.backends.mkldnn.is_available() and ops is not None
            and hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise")
            and bool(getattr(ops, "_is_mkldnn_bf16_supported", lambda: False)()))


class PackedLinear(nn.Module):
    """A bfloat16 nn.Linear for CPU with its weight pre-packed for oneDNN.

    Why: a plain bf16 matmul on CPU re-packs the weight on every call, which makes one-row
    decode steps slower than float32; packed once, bf16 runs 2-3x faster than float32 (half
    the bytes to read). The packed weight replaces the original (no second copy).

    The packed weight is an opaque oneDNN tensor: it can neither leave the CPU nor change
    dtype, and its matmul runs only there. So a move or cast of the module (`.to("cuda")`,
    as ZeroGPU does with a model loaded on the CPU; `.float()`; `.to("meta")`) first unpacks
    it back into a plain weight (exact: the same bf16 values), and from then on it is an
    ordinary linear. A move that leaves bf16 CPU tensors as they are keeps the packing.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 1)
        self.register_buffer("packed_weight", packed, persistent=False)
        self.weight = None  # the plain weight, once unpacked
        self.bias = linear.bias

    @property
    def packed(self) -> bool:
        return self.packed_weight is not None

    def unpack(self) -> None:
        """Turn the packed weight back into a plain nn.Parameter (same values)."""
        if self.packed:
            self.weight = nn.Parameter(self.packed_weight.to_dense(), requires_grad=False)
            self.packed_weight = None

    def _apply(self, fn, recurse=True):
        if self.packed:
            probe = fn(torch.empty(0, dtype=torch.bfloat16))
            if probe.device.type != "cpu" or probe.dtype != torch.bfloat16:
                self.unpack()
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return nn.functional.linear(x, self.weight, self.bias)
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), self.packed_weight, self.bias,
                                               "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)


def pack_linears_for_cpu(module: nn.Module) -> int:
    """Replace every bfloat16 CPU nn.Linear inside `module` by a PackedLinear (inference only);
    returns how many were replaced (0 where oneDNN bf16 is unavailable)."""
    if not cpu_bf16_packing_available():
        return 0
    targets = [(parent, name) for parent in module.modules() for name, child in parent.named_children()
               if type(child) is nn.Linear and child.weight.dtype == torch.bfloat16 and child.weight.device.type == "cpu"]
    for parent, name in targets:  # one at a time, so each original weight is freed as it is replaced
        setattr(parent, name, PackedLinear(getattr(parent, name)))
    return len(targets)
