"""The paper's theory (§B, Appendices E–F) as functions you can check numerically.

* :mod:`.least_squares` — Lemma B.1 (A frozen: B* = ΔΣQᵀ(QΣQᵀ)⁻¹) and Lemma B.2 (B frozen: A* = UᵀΔ),
  their expected losses, the best rank-r (LoRA) fit, and checks against sampled least squares and
  gradient descent on a real asymlora layer.
* :mod:`.theorem` — Theorem B.3 as a Monte Carlo experiment over d/r and families of Σ and Δ, and the
  "extreme example" of §B.1.1 (rank(Σ) ≤ r: a random A is as expressive as a tuned one).
* :mod:`.nonlinear` — §B.1.2 on multiclass logistic regression (scikit-learn's digits).
* :mod:`.bounds` — Lemma B.5's generalisation bounds, the rank at which B-only meets LoRA's bound.

Everything is float64 torch; scikit-learn and matplotlib are imported only where needed.
"""

from .bounds import bound_table, equal_bound_rank, generalization_bound, model_layer_dims, trainable_numbers
from .least_squares import (
    Optimum,
    empirical_loss,
    freeze_a_optimum,
    freeze_b_optimum,
    joint_optimum,
    lemma_check,
    lstsq_freeze_a,
    lstsq_freeze_b,
    population_loss,
    random_stiefel,
    sample_regression,
    train_adapter_layer,
)
from .nonlinear import digits_experiment, fit_logistic, logistic_factor_grads
from .theorem import TheoremCell, extreme_example, theorem_experiment

__all__ = [
    "Optimum", "freeze_a_optimum", "freeze_b_optimum", "joint_optimum", "population_loss", "random_stiefel",
    "sample_regression", "lstsq_freeze_a", "lstsq_freeze_b", "empirical_loss", "train_adapter_layer",
    "lemma_check", "TheoremCell", "theorem_experiment", "extreme_example", "digits_experiment", "fit_logistic",
    "logistic_factor_grads", "generalization_bound", "trainable_numbers", "equal_bound_rank",
    "model_layer_dims", "bound_table",
]
