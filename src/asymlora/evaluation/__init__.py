"""Scoring what a model produces: intervals, and (per modality) generation and scorers."""

from asymlora.evaluation.bootstrap import bootstrap_interval

__all__ = ["bootstrap_interval"]
