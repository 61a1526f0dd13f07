r"""Adapted layers: a frozen base layer plus a low-rank branch, ``y = base(x) + s · B · A · drop(x)``.

::

        x ──────────────► base layer (W0, frozen) ───────────────┐
        │                                                       (+)──► y
        └─► dropout ─► A (r × d_in) ─► h (r) ─► B (d_out × r) ─► s ┘
                      input projection          output projection

Factors are kept in *matrix layout* whatever the base layer: ``lora_A`` is (r × d_in) and
``lora_B`` is (d_out × r), with d_in = c_in·k·k for a k×k convolution. A trainable factor is an
``nn.Parameter``; a frozen one is a (persistent) buffer, so it never reaches an optimizer, never gets a
gradient, and no "enable adapters" switch can unfreeze it by accident.

Adapter math runs in the factors' dtype: float32 when the base is float16/bfloat16 (the input is cast
up for the branch and the branch output cast back), the base's own dtype otherwise.

**Lean path.** When A is frozen (B-only), the branch runs through :class:`_FrozenInputProjection`,
which keeps for backward only h = A·drop(x) (r numbers per token), never x (d_in numbers per token).
Its dropout mask is not stored either: the mask is regenerated in backward from a saved seed, so it is
exactly the same mask and the gradients are exactly those of ordinary input dropout.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import Factor
from .init import factor_seed, init_factor


def is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2 layout: weight is (d_in, d_out), y = x W + b)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def supported_type(module: nn.Module) -> type["AdaptedLayer"] | None:
    """The adapted class for ``module``, or ``None`` if asymlora cannot wrap it."""
    if isinstance(module, nn.Linear):
        return AdaptedLinear
    if is_hf_conv1d(module):
        return AdaptedConv1D
    if isinstance(module, nn.Conv2d):
        return AdaptedConv2d
    return None


class AdaptedLayer(nn.Module):
    """Common machinery; subclasses define the layout-specific projections.

    Attributes: ``base_layer`` (the wrapped module), ``name`` (qualified name in the model),
    ``rank``, ``alpha``, ``scale`` (s), ``factors`` (``{"A": Factor, "B": Factor}``),
    ``seeds`` (the per-factor seeds), ``merged``, ``disabled``.
    """

    kind = "base"

    def __init__(
        self,
        base_layer: nn.Module,
        *,
        name: str,
        rank: int,
        alpha: float,
        a: Factor,
        b: Factor,
        seed: int,
        scaling: str = "standard",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.name = name
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = scaling
        self.scale = self.alpha / (math.sqrt(rank) if scaling == "rslora" else rank)
        self.dropout_p = float(dropout)
        self.factors = {"A": a, "B": b}
        self.seeds = {"A": factor_seed(seed, name, "A"), "B": factor_seed(seed, name, "B")}
        # "init": the factor is still exactly what its seed/init regenerates (so a frozen one can be
        # saved as its seed); "set": it was overwritten (loaded from PEFT, edited) and must be stored.
        self.factor_origin = {"A": "init", "B": "init"}
        self.merged = False
        self.disabled = False

        self._check_dims()
        weight = self.base_layer.weight
        dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        if not dtype.is_floating_point:
            raise TypeError(f"{name}: base weight dtype {weight.dtype} is not floating point; "
                            "quantized bases are not supported by asymlora yet")
        w0 = self.base_weight_matrix() if "svd" in (a.init, b.init) else None
        for which, factor, shape in (("A", a, (rank, self.d_in)), ("B", b, (self.d_out, rank))):
            value = init_factor(factor.init, which, shape, seed=self.seeds[which], base_weight=w0)
            self._register_factor(which, value.to(device=weight.device, dtype=dtype), factor.trainable)

    # ---- dimensions and layouts (overridden) --------------------------------------------------
    @property
    def d_in(self) -> int:
        raise NotImplementedError

    @property
    def d_out(self) -> int:
        raise NotImplementedError

    def _check_dims(self) -> None:
        pass

    def base_weight_matrix(self) -> torch.Tensor:
        """W0 in matrix layout (d_out × d_in), a view of the base weight where possible."""
        raise NotImplementedError

    def _matrix_to_base_layout(self, m: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def project(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """h = A·x for every position (r features)."""
        raise NotImplementedError

    def expand(self, h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """B·h for every position (d_out outputs)."""
        raise NotImplementedError

    # lean-path backward pieces
    def expand_input_grad(self, g: torch.Tensor, b: torch.Tensor, h_shape: torch.Size) -> torch.Tensor:
        raise NotImplementedError

    def expand_weight_grad(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def project_input_grad(self, gh: torch.Tensor, a: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
        raise NotImplementedError

    def supports_lean_path(self) -> bool:
        return True

    # ---- factors --------------------------------------------------------------------------------
    def _register_factor(self, which: str, value: torch.Tensor, trainable: bool) -> None:
        attr = f"lora_{which}"
        if attr in self._parameters:
            del self._parameters[attr]
        if attr in self._buffers:
            del self._buffers[attr]
        if trainable:
            self.register_parameter(attr, nn.Parameter(value))
        else:
            self.register_buffer(attr, value.detach())

    def is_trainable(self, which: str) -> bool:
        return f"lora_{which}" in self._parameters

    def set_trainable(self, which: str, trainable: bool) -> None:
        """Turn factor ``which`` into a parameter (trainable) or a frozen buffer."""
        current = getattr(self, f"lora_{which}").detach()
        self._register_factor(which, current, trainable)
        self.factors[which] = Factor(self.factors[which].init, trainable)

    @torch.no_grad()
    def set_factor(self, which: str, value: torch.Tensor) -> None:
        """Overwrite factor ``which`` (matrix layout); marks it as no longer regenerable from its seed."""
        current = getattr(self, f"lora_{which}")
        if tuple(value.shape) != tuple(current.shape):
            raise ValueError(f"{self.name}: lora_{which} has shape {tuple(current.shape)}, "
                             f"cannot set a tensor of shape {tuple(value.shape)}")
        current.copy_(value.to(current.dtype))
        self.factor_origin[which] = "set"

    def delta_weight(self) -> torch.Tensor:
        """ΔW = s · B · A in matrix layout (d_out × d_in), in the adapter dtype."""
        return self.scale * (self.lora_B @ self.lora_A)

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.base_layer(x, *args, **kwargs)
        if self.disabled or self.merged:
            return out
        return out + self.adapter_output(x).to(out.dtype)

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        """s · B · A · drop(x), in the adapter dtype."""
        a, b = self.lora_A, self.lora_B
        xa = x.to(a.dtype)
        use_lean = (torch.is_grad_enabled() and not a.requires_grad and self.supports_lean_path()
                    and (b.requires_grad or xa.requires_grad))
        if use_lean:
            p = self.dropout_p if self.training else 0.0
            return _FrozenInputProjection.apply(xa, a, b, self, p)
        if self.training and self.dropout_p > 0:
            xa = F.dropout(xa, self.dropout_p, training=True)
        return self.scale * self.expand(self.project(xa, a), b)

    # ---- merging --------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> None:
        """W0 ← W0 + s·B·A, after which forward costs exactly the base layer's."""
        if self.merged:
            return
        weight = self.base_layer.weight
        weight.add_(self._matrix_to_base_layout(self.delta_weight()).to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W0 ← W0 − s·B·A (exact up to round-off in the base dtype)."""
        if not self.merged:
            return
        weight = self.base_layer.weight
        weight.sub_(self._matrix_to_base_layout(self.delta_weight()).to(weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        a, b = self.factors["A"], self.factors["B"]
        return (f"name={self.name!r}, d_in={self.d_in}, d_out={self.d_out}, rank={self.rank}, "
                f"scale={self.scale:g}, A={a.init}{'(trained)' if a.trainable else '(frozen)'}, "
                f"B={b.init}{'(trained)' if b.trainable else '(frozen)'}, dropout={self.dropout_p}")


class AdaptedLinear(AdaptedLayer):
    """``nn.Linear``: y = x W0ᵀ + b + s · (x Aᵀ) Bᵀ."""

    kind = "linear"

    @property
    def d_in(self) -> int:
        return self.base_layer.in_features

    @property
    def d_out(self) -> int:
        return self.base_layer.out_features

    def base_weight_matrix(self) -> torch.Tensor:
        return self.base_layer.weight

    def _matrix_to_base_layout(self, m: torch.Tensor) -> torch.Tensor:
        return m

    def project(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return F.linear(x, a)

    def expand(self, h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.linear(h, b)

    def expand_input_grad(self, g, b, h_shape):
        return g @ b

    def expand_weight_grad(self, g, h):
        return g.reshape(-1, g.shape[-1]).T @ h.reshape(-1, h.shape[-1])

    def project_input_grad(self, gh, a, x_shape):
        return gh @ a


class AdaptedConv1D(AdaptedLinear):
    """transformers' ``Conv1D`` (GPT-2): weight stored transposed, (d_in × d_out); y = x W + b."""

    kind = "conv1d"

    @property
    def d_in(self) -> int:
        return self.base_layer.weight.shape[0]

    @property
    def d_out(self) -> int:
        return self.base_layer.weight.shape[1]

    def base_weight_matrix(self) -> torch.Tensor:
        return self.base_layer.weight.T

    def _matrix_to_base_layout(self, m: torch.Tensor) -> torch.Tensor:
        return m.T


class AdaptedConv2d(AdaptedLayer):
    """``nn.Conv2d``: A is a k×k convolution to r channels (same stride, padding, dilation as the base),
    B a 1×1 convolution from r channels to c_out. In matrix layout A is (r × c_in·k·k)."""

    kind = "conv2d"

    def _check_dims(self) -> None:
        conv = self.base_layer
        if conv.groups != 1:
            raise TypeError(f"{self.name}: grouped/depthwise Conv2d (groups={conv.groups}) is not supported; "
                            "exclude it from targets")
        if conv.padding_mode != "zeros":
            raise TypeError(f"{self.name}: Conv2d padding_mode={conv.padding_mode!r} is not supported "
                            "(only 'zeros'); exclude it from targets")

    @property
    def d_in(self) -> int:
        c = self.base_layer
        return c.in_channels * c.kernel_size[0] * c.kernel_size[1]

    @property
    def d_out(self) -> int:
        return self.base_layer.out_channels

    def base_weight_matrix(self) -> torch.Tensor:
        return self.base_layer.weight.reshape(self.d_out, -1)

    def _matrix_to_base_layout(self, m: torch.Tensor) -> torch.Tensor:
        return m.reshape(self.base_layer.weight.shape)

    def _a_kernel(self, a: torch.Tensor) -> torch.Tensor:
        c = self.base_layer
        return a.reshape(self.rank, c.in_channels, *c.kernel_size)

    def project(self, x, a):
        c = self.base_layer
        return F.conv2d(x, self._a_kernel(a), None, c.stride, c.padding, c.dilation)

    def expand(self, h, b):
        return F.conv2d(h, b[:, :, None, None])

    def supports_lean_path(self) -> bool:
        return not isinstance(self.base_layer.padding, str)

    def expand_input_grad(self, g, b, h_shape):
        return torch.einsum("nohw,or->nrhw", g, b)

    def expand_weight_grad(self, g, h):
        return torch.einsum("nohw,nrhw->or", g, h)

    def project_input_grad(self, gh, a, x_shape):
        c = self.base_layer
        return torch.nn.grad.conv2d_input(x_shape, self._a_kernel(a), gh, c.stride, c.padding, c.dilation)


class _FrozenInputProjection(torch.autograd.Function):
    """out = s · B · (A · drop(x)) with A frozen, saving only h = A·drop(x) and a dropout seed.

    Backward:  ∂L/∂B = s · Σ_tokens g hᵀ;  ∂L/∂x = mask ⊙ (Aᵀ (s · Bᵀ g)) / (1 − p).
    The dropout mask is regenerated from its seed rather than stored.
    """

    @staticmethod
    def forward(ctx, x, a, b, layer: AdaptedLayer, p: float):
        seed = None
        if p > 0:
            seed = int(torch.randint(0, 2**62, (1,)).item())
            x = x * _dropout_mask(x, p, seed)
        h = layer.project(x, a)
        out = layer.scale * layer.expand(h, b)
        ctx.save_for_backward(h, a, b)
        ctx.layer, ctx.p, ctx.seed = layer, p, seed
        ctx.x_meta = (x.shape, x.dtype, x.device)
        return out

    @staticmethod
    def backward(ctx, g):
        h, a, b = ctx.saved_tensors
        layer = ctx.layer
        # Under autocast h may be lower precision than the factors: do the backward matmuls in h's
        # dtype (as autocast did forward) and hand each gradient back in its input's dtype.
        work = h.dtype
        g = g.to(work)
        grad_x = grad_b = None
        if ctx.needs_input_grad[2]:
            grad_b = (layer.scale * layer.expand_weight_grad(g, h)).to(b.dtype)
        if ctx.needs_input_grad[0]:
            shape, dtype, device = ctx.x_meta
            gh = layer.scale * layer.expand_input_grad(g, b.to(work), h.shape)
            grad_x = layer.project_input_grad(gh, a.to(work), shape).to(dtype)
            if ctx.p > 0:
                grad_x = grad_x * _dropout_mask(torch.empty(shape, dtype=dtype, device=device), ctx.p, ctx.seed)
        return grad_x, None, grad_b, None, None


def _dropout_mask(like: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Bernoulli(1 − p') / (1 − p') on ``like``'s shape, reproducible from ``seed`` on ``like``'s device.

    The mask is drawn twice per step (forward, then regenerated in backward), so it is made cheaply:
    one 64-bit random draw yields three independent 16-bit uniform words u ∈ {0, …, 65535}, and an
    element is kept when u ≥ round(p · 65536). The drop probability is therefore p' = round(p·2¹⁶)/2¹⁶
    (|p' − p| ≤ 2⁻¹⁷, e.g. 0.100006 for p = 0.1), and the scale 1/(1 − p') keeps E[mask] = 1 exactly.
    """
    n = like.numel()
    threshold = min(round(p * 65536), 65535)
    gen = torch.Generator(device=like.device)
    gen.manual_seed(seed)
    draws = torch.empty(-(-n // 3), dtype=torch.int64, device=like.device).random_(generator=gen)
    # random_ fills [0, 2⁶³): the 16-bit word holding the sign bit is not uniform, use the other three
    words = draws.view(torch.int16).view(-1, 4)
    words = words[:, :3] if sys.byteorder == "little" else words[:, 1:]
    keep = words.reshape(-1)[:n].reshape(like.shape) >= threshold - 32768  # int16 holds u − 32768
    return keep.to(like.dtype).mul_(65536 / (65536 - threshold))
