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

**Where dropout acts** (``dropout_on``): ``"input"`` (default, as in the paper and PEFT) drops
coordinates of the d_in-wide input x; ``"projection"`` drops features of the r-sized h = A·x, so
y = base(x) + s · B · drop(A·x). The second is another regulariser, and costs r instead of d_in
random numbers per token.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import Factor, scale_for
from .init import factor_seed, init_factor


def is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2 layout: weight is (d_in, d_out), y = x W + b)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def supported_type(module: nn.Module) -> type["AdaptedLayer"] | None:
    """The adapted class for ``module``, or ``None`` if asymlora cannot wrap it."""
    for cls in LAYER_TYPES:
        if cls.handles(module):
            return cls
    return None


def layer_type(module: nn.Module, name: str) -> type["AdaptedLayer"]:
    """The adapted class for ``module`` after checking that it can be wrapped; ``TypeError`` otherwise."""
    cls = supported_type(module)
    if cls is None:
        kinds = ", ".join(c.described_as for c in LAYER_TYPES)
        raise TypeError(f"cannot adapt {name!r}: type {type(module).__module__}.{type(module).__name__} "
                        f"is not supported (supported: {kinds}). "
                        "Target its linear sub-layers instead, or add it to `exclude`.")
    cls.check_supported(module, name)
    return cls


def matrix_weight(module: nn.Module) -> torch.Tensor:
    """W0 (d_out × d_in) of a plain or adapted module, in matrix layout."""
    if isinstance(module, AdaptedLayer):
        return module.base_weight_matrix()
    return layer_type(module, type(module).__name__).weight_matrix(module)


class AdaptedLayer(nn.Module):
    """Common machinery; a subclass per base layer type holds everything that depends on its layout.

    Attributes: ``base_layer`` (the wrapped module), ``name`` (qualified name in the model),
    ``rank``, ``alpha``, ``scale`` (s), ``factors`` (``{"A": Factor, "B": Factor}``),
    ``seeds`` (the per-factor seeds), ``merged``, ``disabled``. The layer starts in the training mode
    of the module it wraps.

    What a layer type defines (and nothing outside this file needs to know):

    * which modules it wraps (:meth:`handles`, :meth:`check_supported`) and their sizes (:meth:`dims`);
    * the weight-matrix view W0 (d_out × d_in) of its base weight and the way back
      (:meth:`weight_matrix`, :meth:`to_base_layout`);
    * the branch h = A·x (:meth:`project`), B·h (:meth:`expand`) and, for batched serving, A_i·x_i
      and B_i·h_i with one factor per row (:meth:`project_rows`, :meth:`expand_rows`);
    * PEFT's tensor layout of each factor, both ways (:attr:`peft_keys`, :meth:`to_peft`, :meth:`from_peft`).
    """

    kind = "base"
    described_as = ""
    # PEFT's key suffixes of the two factors, and whether PEFT's fan_in_fan_out describes the base
    peft_keys = {"A": "lora_A.weight", "B": "lora_B.weight"}
    peft_fan_in_fan_out = False
    # whether dropout acts on the branch input (not for token ids)
    input_dropout = True

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
        dropout_on: str = "input",
    ) -> None:
        super().__init__()
        self.check_supported(base_layer, name)
        self.base_layer = base_layer
        self.training = base_layer.training
        self.name = name
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = scaling
        self.scale = scale_for(self.alpha, rank, scaling)
        self.dropout_p = float(dropout)
        if dropout_on not in ("input", "projection"):
            raise ValueError(f"dropout_on must be 'input' or 'projection', got {dropout_on!r}")
        self.dropout_on = dropout_on
        self.factors = {"A": a, "B": b}
        self.seeds = {"A": factor_seed(seed, name, "A"), "B": factor_seed(seed, name, "B")}
        # "init": the factor is still exactly what its seed/init regenerates (so a frozen one can be
        # saved as its seed); "set": it was overwritten (loaded from PEFT, edited) and must be stored.
        self.factor_origin = {"A": "init", "B": "init"}
        self.merged = False
        self.disabled = False

        weight = self.base_layer.weight
        dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        if not dtype.is_floating_point:
            raise TypeError(f"{name}: base weight dtype {weight.dtype} is not floating point; "
                            "quantized bases are not supported by asymlora yet")
        w0 = self.base_weight_matrix() if "svd" in (a.init, b.init) else None
        for which, factor in (("A", a), ("B", b)):
            value = init_factor(factor.init, which, self.factor_shape(which), seed=self.seeds[which], base_weight=w0)
            self._register_factor(which, value.to(device=weight.device, dtype=dtype), factor.trainable)

    # ---- what a layer type defines ----------------------------------------------------------------
    @classmethod
    def handles(cls, module: nn.Module) -> bool:
        raise NotImplementedError

    @classmethod
    def check_supported(cls, module: nn.Module, name: str) -> None:
        """Raise ``TypeError`` for a variant of the base type that cannot be adapted."""

    @classmethod
    def dims(cls, module: nn.Module) -> tuple[int, int]:
        """``(d_in, d_out)`` of the plain base module."""
        raise NotImplementedError

    @classmethod
    def weight_matrix(cls, module: nn.Module) -> torch.Tensor:
        """W0 of the plain base module in matrix layout (d_out × d_in), a view where possible."""
        raise NotImplementedError

    def to_base_layout(self, m: torch.Tensor) -> torch.Tensor:
        """A (d_out × d_in) matrix in the layout of the base weight."""
        raise NotImplementedError

    def branch_input(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The layer input as the branch reads it (cast to the factors' dtype)."""
        return x.to(dtype)

    def project(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """h = A·x for every position (r features)."""
        raise NotImplementedError

    def expand(self, h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """B·h for every position (d_out outputs)."""
        raise NotImplementedError

    def project_rows(self, x: torch.Tensor, a_rows: torch.Tensor) -> torch.Tensor:
        """h_i = A_i·x_i for every position of row i, with ``a_rows`` (batch × r × d_in) one A per row.

        Generic: one :meth:`project` per row; a layer type with a batched product overrides it."""
        return torch.cat([self.project(x[i:i + 1], a_rows[i]) for i in range(x.shape[0])])

    def expand_rows(self, h: torch.Tensor, bs: torch.Tensor) -> torch.Tensor:
        """B_i·h_i for every position of row i, with ``bs`` (batch × d_out × r) one B per row."""
        flat = h.reshape(h.shape[0], -1, h.shape[-1])  # (batch, positions, r)
        return torch.bmm(flat, bs.transpose(1, 2)).reshape(h.shape[:-1] + (bs.shape[1],))

    def add_expand_rows(self, out: torch.Tensor, h: torch.Tensor, bs: torch.Tensor) -> torch.Tensor:
        """out + B_i·h_i for every position of row i (in place where the layout allows it: ``out`` is then
        a fresh base output that nothing else holds, and autograd is off)."""
        return out + self.expand_rows(h, bs).to(out.dtype)

    def peft_shape(self, which: str) -> tuple[int, ...]:
        """The shape PEFT gives factor ``which`` of this layer."""
        return self.factor_shape(which)

    def to_peft(self, which: str, m: torch.Tensor) -> torch.Tensor:
        """Factor ``which`` (matrix layout) in PEFT's layout."""
        return m.reshape(self.peft_shape(which))

    def from_peft(self, which: str, t: torch.Tensor) -> torch.Tensor:
        """PEFT's tensor of factor ``which`` in matrix layout; ``ValueError`` if its shape is not this layer's."""
        expected = self.peft_shape(which)
        if tuple(t.shape) != expected:
            raise ValueError(f"{self.name}: PEFT's {self.peft_keys[which]} has shape {tuple(t.shape)}, this layer "
                             f"needs {expected} (rank {self.rank})")
        return t.reshape(self.factor_shape(which))

    # lean-path backward pieces
    def expand_input_grad(self, g: torch.Tensor, b: torch.Tensor, h_shape: torch.Size) -> torch.Tensor:
        raise NotImplementedError

    def expand_weight_grad(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def project_input_grad(self, gh: torch.Tensor, a: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
        raise NotImplementedError

    def supports_lean_path(self) -> bool:
        return True

    # ---- shapes ---------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.dims(self.base_layer)[0]

    @property
    def d_out(self) -> int:
        return self.dims(self.base_layer)[1]

    def factor_shape(self, which: str) -> tuple[int, int]:
        """(r, d_in) for A, (d_out, r) for B."""
        return (self.rank, self.d_in) if which == "A" else (self.d_out, self.rank)

    def base_weight_matrix(self) -> torch.Tensor:
        """W0 in matrix layout (d_out × d_in), a view of the base weight where possible."""
        return self.weight_matrix(self.base_layer)

    # ---- factors --------------------------------------------------------------------------------
    def factor(self, which: str) -> torch.Tensor:
        """Factor ``which`` ("A" or "B") in matrix layout: the parameter or buffer itself."""
        if which not in ("A", "B"):
            raise ValueError(f"which must be 'A' or 'B', got {which!r}")
        return getattr(self, f"lora_{which}")

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
        current = self.factor(which).detach()
        self._register_factor(which, current, trainable)
        self.factors[which] = Factor(self.factors[which].init, trainable)

    @torch.no_grad()
    def set_factor(self, which: str, value: torch.Tensor) -> None:
        """Overwrite factor ``which`` (matrix layout); marks it as no longer regenerable from its seed."""
        current = self.factor(which)
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
        xa = self.branch_input(x, a.dtype)
        use_lean = (torch.is_grad_enabled() and not a.requires_grad and self.supports_lean_path()
                    and (b.requires_grad or xa.requires_grad))
        dropout = self.dropout_p if self.training and self.input_dropout else 0.0
        on_input = self.dropout_on == "input"
        if use_lean:
            return _FrozenInputProjection.apply(xa, a, b, self, dropout, on_input)
        if dropout > 0 and on_input:
            xa = F.dropout(xa, dropout, training=True)
        h = self.project(xa, a)
        if dropout > 0 and not on_input:
            h = F.dropout(h, dropout, training=True)
        return self.scale * self.expand(h, b)

    # ---- merging --------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> None:
        """W0 ← W0 + s·B·A, after which forward costs exactly the base layer's."""
        if self.merged:
            return
        weight = self.base_layer.weight
        weight.add_(self.to_base_layout(self.delta_weight()).to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W0 ← W0 − s·B·A (exact up to round-off in the base dtype)."""
        if not self.merged:
            return
        weight = self.base_layer.weight
        weight.sub_(self.to_base_layout(self.delta_weight()).to(weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        a, b = self.factors["A"], self.factors["B"]
        return (f"name={self.name!r}, d_in={self.d_in}, d_out={self.d_out}, rank={self.rank}, "
                f"scale={self.scale:g}, A={a.init}{'(trained)' if a.trainable else '(frozen)'}, "
                f"B={b.init}{'(trained)' if b.trainable else '(frozen)'}, dropout={self.dropout_p}"
                + ("" if self.dropout_on == "input" else f" on {self.dropout_on}"))


class AdaptedLinear(AdaptedLayer):
    """``nn.Linear``: y = x W0ᵀ + b + s · (x Aᵀ) Bᵀ."""

    kind = "linear"
    described_as = "nn.Linear"

    @classmethod
    def handles(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.Linear)

    @classmethod
    def dims(cls, module: nn.Module) -> tuple[int, int]:
        return module.in_features, module.out_features

    @classmethod
    def weight_matrix(cls, module: nn.Module) -> torch.Tensor:
        return module.weight

    def to_base_layout(self, m: torch.Tensor) -> torch.Tensor:
        return m

    def project(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return F.linear(x, a)

    def project_rows(self, x: torch.Tensor, a_rows: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (batch, positions, d_in)
        return torch.bmm(flat, a_rows.transpose(1, 2)).reshape(x.shape[:-1] + (a_rows.shape[1],))

    def add_expand_rows(self, out, h, bs):
        # one baddbmm into the base output: no (batch × positions × d_out) temporary, no second pass
        if (out.dtype != h.dtype or not out.is_contiguous() or torch.is_grad_enabled()
                or out.shape[:-1] != h.shape[:-1]):
            return super().add_expand_rows(out, h, bs)
        flat = out.view(out.shape[0], -1, out.shape[-1])
        flat.baddbmm_(h.reshape(h.shape[0], -1, h.shape[-1]), bs.transpose(1, 2))
        return out

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
    described_as = "transformers Conv1D"
    peft_fan_in_fan_out = True

    @classmethod
    def handles(cls, module: nn.Module) -> bool:
        return is_hf_conv1d(module)

    @classmethod
    def dims(cls, module: nn.Module) -> tuple[int, int]:
        return module.weight.shape[0], module.weight.shape[1]

    @classmethod
    def weight_matrix(cls, module: nn.Module) -> torch.Tensor:
        return module.weight.T

    def to_base_layout(self, m: torch.Tensor) -> torch.Tensor:
        return m.T


class AdaptedConv2d(AdaptedLayer):
    """``nn.Conv2d``: A is a k×k convolution to r channels (same stride, padding, dilation as the base),
    B a 1×1 convolution from r channels to c_out. In matrix layout A is (r × c_in·k·k); PEFT stores A as
    (r, c_in, k, k) and B as (c_out, r, 1, 1)."""

    kind = "conv2d"
    described_as = "nn.Conv2d"

    @classmethod
    def handles(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.Conv2d)

    @classmethod
    def check_supported(cls, module: nn.Module, name: str) -> None:
        if module.groups != 1:
            raise TypeError(f"{name}: grouped/depthwise Conv2d (groups={module.groups}) is not supported; "
                            "exclude it from targets")
        if module.padding_mode != "zeros":
            raise TypeError(f"{name}: Conv2d padding_mode={module.padding_mode!r} is not supported "
                            "(only 'zeros'); exclude it from targets")

    @classmethod
    def dims(cls, module: nn.Module) -> tuple[int, int]:
        return module.in_channels * module.kernel_size[0] * module.kernel_size[1], module.out_channels

    @classmethod
    def weight_matrix(cls, module: nn.Module) -> torch.Tensor:
        return module.weight.reshape(module.out_channels, -1)

    def to_base_layout(self, m: torch.Tensor) -> torch.Tensor:
        return m.reshape(self.base_layer.weight.shape)

    def peft_shape(self, which: str) -> tuple[int, ...]:
        c = self.base_layer
        return (self.rank, c.in_channels, *c.kernel_size) if which == "A" else (self.d_out, self.rank, 1, 1)

    def _kernel(self, a: torch.Tensor) -> torch.Tensor:
        return a.reshape(self.peft_shape("A"))

    def project(self, x, a):
        c = self.base_layer
        return F.conv2d(x, self._kernel(a), None, c.stride, c.padding, c.dilation)

    def expand(self, h, b):
        return F.conv2d(h, b[:, :, None, None])

    def expand_rows(self, h, bs):
        return torch.einsum("brhw,bor->bohw", h, bs)

    def supports_lean_path(self) -> bool:
        return not isinstance(self.base_layer.padding, str)

    def expand_input_grad(self, g, b, h_shape):
        return torch.einsum("nohw,or->nrhw", g, b)

    def expand_weight_grad(self, g, h):
        return torch.einsum("nohw,nrhw->or", g, h)

    def project_input_grad(self, gh, a, x_shape):
        c = self.base_layer
        return torch.nn.grad.conv2d_input(x_shape, self._kernel(a), gh, c.stride, c.padding, c.dilation)


class AdaptedEmbedding(AdaptedLayer):
    """``nn.Embedding``: the input is a token id t, i.e. a one-hot vector of size d_in = num_embeddings,
    so h = A·onehot(t) is column t of A and y = W0[t] + s · B · A[:, t].

    In matrix layout W0 is the transposed embedding table (d_out = embedding_dim × d_in =
    num_embeddings), as in PEFT, whose ``lora_embedding_A`` (r × num_embeddings) and
    ``lora_embedding_B`` (embedding_dim × r) are these factors. Dropout does not act on token ids (as in
    PEFT). Plain autograd is already lean here: the branch keeps h (r numbers per token) and the ids.
    """

    kind = "embedding"
    described_as = "nn.Embedding"
    peft_keys = {"A": "lora_embedding_A", "B": "lora_embedding_B"}
    input_dropout = False

    @classmethod
    def handles(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.Embedding)

    @classmethod
    def check_supported(cls, module: nn.Module, name: str) -> None:
        if module.max_norm is not None:
            raise TypeError(f"{name}: nn.Embedding with max_norm renormalises its table in place and is not "
                            "supported; exclude it from targets")

    @classmethod
    def dims(cls, module: nn.Module) -> tuple[int, int]:
        return module.num_embeddings, module.embedding_dim

    @classmethod
    def weight_matrix(cls, module: nn.Module) -> torch.Tensor:
        return module.weight.T

    def to_base_layout(self, m: torch.Tensor) -> torch.Tensor:
        return m.T

    def branch_input(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x

    def project(self, x, a):
        e = self.base_layer
        return F.embedding(x, a.T, e.padding_idx, None, 2.0, e.scale_grad_by_freq, e.sparse)

    def expand(self, h, b):
        return F.linear(h, b)

    def supports_lean_path(self) -> bool:
        return False


LAYER_TYPES: tuple[type[AdaptedLayer], ...] = (AdaptedLinear, AdaptedConv1D, AdaptedConv2d, AdaptedEmbedding)


class _FrozenInputProjection(torch.autograd.Function):
    """out = s · B · h with A frozen, saving only h (r numbers per token) and a dropout seed.

    Dropout on the input:       h = A · (keep ⊙ x) / (1 − p'),
        ∂L/∂B = s · Σ_tokens g hᵀ;  ∂L/∂x = keep ⊙ (Aᵀ (s · Bᵀ g / (1 − p'))).
    Dropout on the projection:  h = keep ⊙ (A · x) / (1 − p'),
        ∂L/∂B = s · Σ_tokens g hᵀ;  ∂L/∂x = Aᵀ (keep ⊙ s · Bᵀ g / (1 − p')).

    The mask is regenerated from its seed in backward rather than stored. The scale 1/(1 − p') is
    applied to the r-sized h and s·Bᵀg, never to the d_in-wide x or ∂L/∂x: the only d_in-wide work of
    input dropout is drawing the mask and one masked fill each way.
    """

    @staticmethod
    def forward(ctx, x, a, b, layer: AdaptedLayer, p: float, on_input: bool):
        seed = None
        if p > 0:
            seed = int(torch.randint(0, 2**62, (1,)).item())
            if on_input:
                x = x.masked_fill(_dropped(x.shape, p, seed, x.device), 0)
        h = layer.project(x, a)
        if p > 0:
            h = h.mul_(_keep_scale(p)) if on_input else _apply_dropout(h, p, seed)
        out = layer.scale * layer.expand(h, b)
        ctx.save_for_backward(h, a, b)
        ctx.layer, ctx.p, ctx.seed, ctx.on_input = layer, p, seed, on_input
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
            if ctx.p > 0:
                gh = gh.mul_(_keep_scale(ctx.p)) if ctx.on_input else _apply_dropout(gh, ctx.p, ctx.seed)
            grad_x = layer.project_input_grad(gh, a.to(work), shape).to(dtype)
            if ctx.p > 0 and ctx.on_input:
                grad_x = grad_x.masked_fill_(_dropped(shape, ctx.p, ctx.seed, device), 0)
        return grad_x, None, grad_b, None, None, None


def _threshold(p: float) -> int:
    """round(p · 2¹⁶): a 16-bit uniform word u ∈ {0, …, 65535} is dropped when u < this."""
    return min(round(p * 65536), 65535)


def _keep_scale(p: float) -> float:
    """1 / (1 − p') with p' = round(p·2¹⁶)/2¹⁶ the exact drop probability of :func:`_dropped`."""
    return 65536 / (65536 - _threshold(p))


def _dropped(shape: torch.Size | tuple[int, ...], p: float, seed: int, device: Any) -> torch.Tensor:
    """A boolean tensor of ``shape``, True where an element is dropped, reproducible from ``seed``.

    The mask is drawn twice per step (forward, then regenerated in backward), so it is made cheaply:
    each 64-bit draw of the seeded generator over the full int64 range yields four independent
    uniform 16-bit words u, read in place (an int16 view, no copy), and an element is dropped when
    u < round(p · 65536). The drop probability is therefore p' = round(p·2¹⁶)/2¹⁶ (|p' − p| ≤ 2⁻¹⁷,
    e.g. 0.100006 for p = 0.1); with the scale :func:`_keep_scale` E[mask] = 1 exactly.
    """
    n = 1
    for s in shape:
        n *= s
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    draws = torch.empty(-(-n // 4), dtype=torch.int64, device=device).random_(-2**63, None, generator=gen)
    words = draws.view(torch.int16)[:n].view(shape)  # int16 holds u − 32768
    return words < _threshold(p) - 32768


def _apply_dropout(t: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """keep ⊙ t / (1 − p') in place, with the mask of :func:`_dropped` for ``seed``."""
    return t.masked_fill_(_dropped(t.shape, p, seed, t.device), 0).mul_(_keep_scale(p))


def _dropout_mask(like: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """The mask of :func:`_dropped` as numbers: 0 where dropped, 1/(1 − p') where kept (E = 1)."""
    keep = ~_dropped(like.shape, p, seed, like.device)
    return keep.to(like.dtype).mul_(_keep_scale(p))
