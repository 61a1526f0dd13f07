"""A task head on mean-pooled token states: the sentence-embedding readout of sentence-transformers models.

Hugging Face's sequence-classification heads read one position: BERT's passes the [CLS] state through
its pretrained pooler (``tanh(W_p h_[CLS])``, trained for next-sentence prediction), RoBERTa's the
<s> state. Models such as all-MiniLM-L6-v2 and all-mpnet-base-v2 were instead trained so that the
*mean* of the token states is the sentence embedding. With the encoder frozen (linear probing) the
fair readout for them is

    e = Σ_t m_t h_t / Σ_t m_t        (h_t the last hidden states, m_t the attention mask)
    logits = W · dropout(e) + b      (W ∈ R^{k×d} Normal(0, initializer_range), b = 0)

which :class:`MeanPoolingClassifier` computes over any ``AutoModel`` encoder. The loss follows
Hugging Face's ``problem_type``: cross-entropy for single-label classification, mean squared error
of the single output for regression. The head is a top-level child called ``classifier``, so every
method trains, saves and reloads it like a Hugging Face head.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

POOLINGS = ("model", "mean")  # "model": the model's own sequence-classification head


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Σ_t m_t h_t / Σ_t m_t over the sequence axis (plain mean without a mask); (batch, seq, d) → (batch, d)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class MeanPoolingClassifier(nn.Module):
    """``encoder`` (a Hugging Face base model) + mean pooling + dropout + linear head ``classifier``."""

    def __init__(self, encoder: nn.Module, num_labels: int, problem_type: str = "single_label_classification"):
        super().__init__()
        if problem_type not in ("single_label_classification", "regression"):
            raise ValueError(f"mean pooling supports single-label classification and regression, not {problem_type!r}")
        cfg = encoder.config
        self.encoder = encoder
        self.config = cfg
        self.num_labels = 1 if problem_type == "regression" else int(num_labels)
        self.problem_type = problem_type
        p = getattr(cfg, "classifier_dropout", None)
        p = getattr(cfg, "hidden_dropout_prob", 0.1) if p is None else p
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(cfg.hidden_size, self.num_labels)
        nn.init.normal_(self.classifier.weight, std=getattr(cfg, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **inputs: Any):
        from transformers.modeling_outputs import SequenceClassifierOutput

        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.problem_type == "regression":
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)
