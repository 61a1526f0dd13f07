"""Tasks: data + a model head + a metric, for every modality (see docs/ARCHITECTURE.md)."""
