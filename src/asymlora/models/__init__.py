"""Models by short name (pinned registry packages), hub name or local folder (see docs/DATA.md)."""

from asymlora.models.registry import (
    DEFAULT_MODEL,
    MODELS,
    TARGETS_BY_TYPE,
    ModelError,
    ModelSpec,
    default_targets,
    load_model,
    resolve_model,
)

__all__ = ["DEFAULT_MODEL", "MODELS", "TARGETS_BY_TYPE", "ModelError", "ModelSpec", "default_targets",
           "load_model", "resolve_model"]
