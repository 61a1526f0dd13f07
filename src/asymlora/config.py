"""Adapter configuration: one :class:`Factor` policy for each of A and B, plus rank, scaling, targets.

An adapted weight is ``W = W0 + s · B · A`` with

* ``A`` (r × d_in), the *input* (down) projection: it extracts r features from the layer input;
* ``B`` (d_out × r), the *output* (up) projection: it maps those features to the layer output;
* ``s = alpha / r`` (``scaling="standard"``) or ``alpha / sqrt(r)`` (``scaling="rslora"``).

Each factor has an initialisation and a trainable flag. The paper's notation maps onto it directly:
a hat marks a trained factor and the subscript names the init, so ``B̂₀ A_rand`` ("b-only") is
``b=Factor("zeros", True), a=Factor("orthogonal", False)``. See :data:`PRESETS`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .names import check_pattern

INITS = ("orthogonal", "zeros", "kaiming", "gaussian", "svd")
SCALINGS = ("standard", "rslora")
DROPOUT_ON = ("input", "projection")  # where adapter dropout acts: drop(x) or drop(A·x)
ALL_LINEAR = "all-linear"
MAX_SEED = 2**64


class ConfigError(ValueError, TypeError):
    """A configuration value of the wrong type or out of range (a ``ValueError``, and a ``TypeError``
    for code written against earlier versions, which raised that for wrong types)."""


@dataclass(frozen=True)
class Factor:
    """How one factor of the adapter starts and whether it trains.

    ``init`` is one of:

    * ``"orthogonal"``: uniform on the Stiefel manifold (Haar measure): A has orthonormal rows,
      B orthonormal columns. The paper's "rand".
    * ``"zeros"``: the zero matrix. The paper's "0".
    * ``"kaiming"``: LoRA's Kaiming-uniform with a = √5, i.e. U(−1/√fan_in, 1/√fan_in). The paper's "km".
    * ``"gaussian"``: i.i.d. N(0, 1/d) with d the factor's long side, so that it is close to
      orthonormal when d ≫ r (the paper's remark after Table 4).
    * ``"svd"``: singular vectors of the pretrained weight W0 = U S Vᵀ: the top-r rows of Vᵀ for A
      (the paper's "V"), the top-r columns of U for B ("U").
    """

    init: str
    trainable: bool

    def __post_init__(self) -> None:
        if not isinstance(self.init, str) or self.init not in INITS:
            raise ConfigError(f"Factor init must be one of {INITS}, got {self.init!r}")
        if not isinstance(self.trainable, bool):
            raise ConfigError(f"Factor trainable must be a bool (True or False), got {self.trainable!r}")

    @classmethod
    def from_dict(cls, d: Any, what: str = "factor") -> "Factor":
        """``{"init": ..., "trainable": ...}`` → Factor, with errors that name ``what``."""
        if not isinstance(d, Mapping) or set(d) != {"init", "trainable"}:
            raise ConfigError(f"{what} must be an object with exactly the fields 'init' and 'trainable', got {d!r}")
        try:
            return cls(d["init"], d["trainable"])
        except ConfigError as err:
            raise ConfigError(f"{what}: {err}") from None

    def paper_symbol(self, letter: str) -> str:
        """The paper's notation for this factor, e.g. ``B̂_0`` or ``A_rand``."""
        sub = {"orthogonal": "rand", "zeros": "0", "kaiming": "km", "gaussian": "gauss",
               "svd": "V" if letter == "A" else "U"}[self.init]
        return unicodedata.normalize("NFC", f"{letter}{chr(0x302) if self.trainable else ''}_{sub}")


# name -> (A factor, B factor, paper notation). Every row of the paper's Tables 5 and 10.
PRESETS: dict[str, tuple[Factor, Factor]] = {
    # classic LoRA: A Kaiming, B zero, both trained (B̂₀Â_km)
    "lora": (Factor("kaiming", True), Factor("zeros", True)),
    # the paper's recommendation: A frozen random orthogonal, B trained from zero (B̂₀A_rand)
    "b-only": (Factor("orthogonal", False), Factor("zeros", True)),
    # the mirror image: B frozen random orthogonal, A trained from zero (B_rand Â₀)
    "a-only": (Factor("zeros", True), Factor("orthogonal", False)),
    # Table 10, B-only variants with other frozen A
    "b-only-svd": (Factor("svd", False), Factor("zeros", True)),  # B̂₀ A_V
    "b-only-kaiming": (Factor("kaiming", False), Factor("zeros", True)),  # B̂₀ A_km
    # Table 10, A-only variants with other frozen B
    "a-only-svd": (Factor("zeros", True), Factor("svd", False)),  # B_U Â₀
    "a-only-kaiming": (Factor("zeros", True), Factor("kaiming", False)),  # B_km Â₀
    # Table 5, both trained, other inits
    "lora-svd": (Factor("svd", True), Factor("zeros", True)),  # B̂₀ Â_V
    "lora-orthogonal": (Factor("orthogonal", True), Factor("zeros", True)),  # B̂₀ Â_rand
    "lora-b-svd": (Factor("zeros", True), Factor("svd", True)),  # B̂_U Â₀
    "lora-b-orthogonal": (Factor("zeros", True), Factor("orthogonal", True)),  # B̂_rand Â₀
    "lora-b-kaiming": (Factor("zeros", True), Factor("kaiming", True)),  # B̂_km Â₀
}


def scale_for(alpha: float, rank: int, scaling: str) -> float:
    """s = alpha / r (``"standard"``) or alpha / √r (``"rslora"``)."""
    return float(alpha) / (math.sqrt(rank) if scaling == "rslora" else rank)


def paper_notation(a: Factor, b: Factor) -> str:
    """E.g. ``B̂_0 A_rand`` for the b-only policy."""
    return f"{b.paper_symbol('B')} {a.paper_symbol('A')}"


PatternMap = Mapping[str, float]


@dataclass(frozen=True)
class AdapterConfig:
    """Everything needed to build (and later rebuild bit-for-bit) a set of adapters.

    Args:
        a: policy of A, the input (down) projection, r × d_in.
        b: policy of B, the output (up) projection, d_out × r.
        rank: r, the inner dimension (≥ 1).
        alpha: scale numerator; ``None`` means the paper's default alpha = 2r.
        targets: which modules get adapters: a list of names (each matches a module whose qualified
            name equals it or ends in ``"." + name``), a regular expression string (full match on the
            qualified name), or ``"all-linear"`` (every linear layer except the output head).
        seed: seeds every random factor; a frozen random factor is a function of
            ``(seed, qualified layer name, factor)`` only, so it is stored as its seed.
        train_modules: modules trained in full beside the adapters (e.g. a classifier head), same
            matching as a list of targets.
        dropout: dropout probability (0 disables).
        dropout_on: where dropout acts. ``"input"`` (default; the paper's and PEFT's semantics):
            y = W0·x + s·B·A·drop(x), a mask over the d_in-wide layer input. ``"projection"``:
            y = W0·x + s·B·drop(A·x), a mask over the r-sized h = A·x — a different regulariser
            (it drops whole features of A·x, not input coordinates), much cheaper to draw
            (r instead of d_in numbers per token). Configs saved before this field existed load
            as ``"input"``.
        scaling: ``"standard"`` (s = alpha/r) or ``"rslora"`` (s = alpha/√r).
        rank_pattern / alpha_pattern: per-layer overrides, ``{pattern: value}``; a pattern matches
            like a target name (exact or dotted suffix) or, failing that, as a full-match regex.
        exclude: names/regex of modules never to adapt even if they match ``targets``.
    """

    a: Factor = field(default_factory=lambda: PRESETS["b-only"][0])
    b: Factor = field(default_factory=lambda: PRESETS["b-only"][1])
    rank: int = 8
    alpha: float | None = None
    targets: Sequence[str] | str = ALL_LINEAR
    seed: int = 0
    train_modules: Sequence[str] = ()
    dropout: float = 0.0
    scaling: str = "standard"
    dropout_on: str = "input"
    rank_pattern: PatternMap = field(default_factory=dict)
    alpha_pattern: PatternMap = field(default_factory=dict)
    exclude: Sequence[str] = ()

    def __post_init__(self) -> None:
        # normalise sequences to tuples so that the config is hashable and JSON round-trips
        for key in ("a", "b"):
            if not isinstance(getattr(self, key), Factor):
                raise ConfigError(f"{key} must be a Factor, e.g. {key}=Factor('orthogonal', False), got "
                                  f"{getattr(self, key)!r}; or start from AdapterConfig.preset(name)")
        if isinstance(self.targets, str):
            if self.targets != ALL_LINEAR:
                check_pattern(self.targets, "targets")
        else:
            object.__setattr__(self, "targets", _names(self.targets, "targets"))
            if not self.targets:
                raise ConfigError("targets is empty: name at least one module, a regex, or 'all-linear'")
        object.__setattr__(self, "train_modules", _names(self.train_modules, "train_modules"))
        object.__setattr__(self, "exclude", _names(self.exclude, "exclude"))
        for pattern in self.exclude:
            check_pattern(pattern, "exclude entry")
        object.__setattr__(self, "rank_pattern", _pattern_map(self.rank_pattern, "rank_pattern"))
        object.__setattr__(self, "alpha_pattern", _pattern_map(self.alpha_pattern, "alpha_pattern"))
        _check_rank(self.rank, "rank")
        for pattern, r in self.rank_pattern.items():
            _check_rank(r, f"rank_pattern[{pattern!r}]")
        if self.alpha is not None:
            _check_alpha(self.alpha, "alpha", " (or None for the paper's 2·rank)")
        for pattern, al in self.alpha_pattern.items():
            _check_alpha(al, f"alpha_pattern[{pattern!r}]")
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.dropout_on, str) or self.dropout_on not in DROPOUT_ON:
            raise ConfigError(f"dropout_on must be one of {DROPOUT_ON} (\"input\": drop(x), the paper's and "
                              f"PEFT's; \"projection\": drop(A·x)), got {self.dropout_on!r}")
        if not isinstance(self.scaling, str) or self.scaling not in SCALINGS:
            raise ConfigError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not -MAX_SEED < self.seed < MAX_SEED:
            raise ConfigError(f"seed must be an int with |seed| < 2**64, got {self.seed!r}")
        _check_can_learn(self.a, self.b)

    # ----------------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "AdapterConfig":
        """A config from a named factor policy (see :data:`PRESETS`) plus any field overrides."""
        key = name.lower().replace("_", "-") if isinstance(name, str) else name
        if key not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown AdapterConfig fields {unknown}; the fields are "
                              f"{[f.name for f in dataclasses.fields(cls)]}")
        a, b = PRESETS[key]
        return cls(**{"a": a, "b": b, **overrides})

    @property
    def notation(self) -> str:
        """The paper's name of this policy, e.g. ``B̂_0 A_rand``."""
        return paper_notation(self.a, self.b)

    def alpha_for(self, rank: int) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * rank

    def replace(self, **changes: Any) -> "AdapterConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["targets"] = self.targets if isinstance(self.targets, str) else list(self.targets)
        d["train_modules"] = list(self.train_modules)
        d["exclude"] = list(self.exclude)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "AdapterConfig":
        """The inverse of :meth:`to_dict`; a :class:`ConfigError` names any field that is wrong."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"an adapter config must be an object of fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown adapter config fields {sorted(map(str, unknown))}; "
                              "was this written by a newer asymlora? Upgrade asymlora to read it.")
        d = dict(d)
        for key in ("a", "b"):
            if key in d:
                d[key] = Factor.from_dict(d[key], key)
        for key in ("targets", "train_modules", "exclude"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_rank(rank: Any, what: str) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise ConfigError(f"{what} must be an int ≥ 1, got {rank!r}")
    if rank < 1:
        raise ConfigError(f"{what} must be ≥ 1, got {rank}")


def _check_alpha(alpha: Any, what: str, hint: str = "") -> None:
    if not _is_number(alpha) or not math.isfinite(alpha) or not alpha > 0:
        raise ConfigError(f"{what} must be a finite number > 0{hint}, got {alpha!r}")


def _names(value: Any, what: str) -> tuple[str, ...]:
    """A list of module names/patterns as a tuple; a bare string is refused (it would be split into letters)."""
    if isinstance(value, str):
        raise ConfigError(f"{what} must be a list of module names, e.g. {what}=[{value!r}], got the string {value!r}")
    try:
        items = tuple(value)
    except TypeError:
        raise ConfigError(f"{what} must be a list of module names, got {value!r}") from None
    bad = [v for v in items if not isinstance(v, str) or not v]
    if bad:
        raise ConfigError(f"every entry of {what} must be a non-empty module name (a string), got {bad[0]!r}")
    return items


def _pattern_map(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must map module names or patterns to values, e.g. {{'v_proj': 4}}, got {value!r}")
    for key in value:
        check_pattern(key, f"{what} key")
    return dict(value)


def _check_can_learn(a: Factor, b: Factor) -> None:
    """Refuse policies whose ΔW = s·B·A can never leave zero (or never change).

    ∂L/∂B = s·g·(A x)ᵀ vanishes when A ≡ 0, and ∂L/∂A = s·Bᵀ g xᵀ vanishes when B ≡ 0; so a factor
    whose partner is frozen at zero never moves, and two zero factors stay zero forever.
    """
    if not (a.trainable or b.trainable):
        raise ValueError("both factors are frozen, so the adapter can never change. "
                         "Make A or B trainable (e.g. the 'b-only' preset trains B).")
    if a.init == "zeros" and b.init == "zeros":
        raise ValueError("A and B both start at zero: every gradient of B·A is zero, so training "
                         "never moves. Give one factor a non-zero init (e.g. A 'orthogonal').")
    if b.trainable and not a.trainable and a.init == "zeros":
        raise ValueError("B trains but A is frozen at zero, so ∂L/∂B = s·g·(A x)ᵀ = 0 forever. "
                         "Freeze A at a non-zero init (e.g. 'orthogonal', the 'b-only' preset).")
    if a.trainable and not b.trainable and b.init == "zeros":
        raise ValueError("A trains but B is frozen at zero, so ∂L/∂A = s·Bᵀ g xᵀ = 0 forever. "
                         "Freeze B at a non-zero init (e.g. 'orthogonal', the 'a-only' preset).")
