"""Run the benchmark sections on one model and device, print one ratio table, write the JSON record."""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Sequence

import torch

from .measure import clock_name, resolve_clock
from .models import get_bench_model
from .report import Row, format_absolute, format_table, machine_info, machine_line
from .sections import DEFAULT_SECTIONS, RUNNERS, SECTIONS, Settings

__all__ = ["DTYPES", "build_settings", "run_suite", "render"]

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def build_settings(model: str = "tiny", *, device: str = "cpu", dtype: str = "fp32", quick: bool = False,
                   rank: int = 8, dropout: float = 0.1, batch: int | None = None, seq_len: int | None = None,
                   warmup: int | None = None, repeats: int | None = None, serve_counts: Sequence[int] | None = None,
                   serve_new_tokens: int | None = None, job_batches: int | None = None, seed: int = 0, clock: str = "auto", progress: Callable[[str], None] | None = None) -> Settings:
    spec = get_bench_model(model)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of fp32, bf16, fp16")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"the benchmark runs on cpu or cuda, not {device!r}")
    if clock not in ("auto", "wall", "cpu"):
        raise ValueError(f"clock must be auto, wall or cpu, got {clock!r}")
    if rank < 1:
        raise ValueError(f"rank must be ≥ 1, got {rank}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if job_batches is not None and job_batches < 1:
        raise ValueError(f"job batches must be ≥ 1, got {job_batches}")
    return Settings(
        spec=spec, device=str(dev), dtype=DTYPES[dtype], rank=rank, dropout=dropout,
        batch=batch or (spec.quick_batch if quick else spec.batch),
        seq_len=seq_len or (spec.quick_seq_len if quick else spec.seq_len),
        warmup=warmup if warmup is not None else (1 if quick else 2),
        repeats=repeats if repeats is not None else (3 if quick else 7),
        serve_counts=tuple(serve_counts) if serve_counts else ((1, 4) if quick else (1, 4, 16)),
        serve_batch=spec.serve_batch if not quick else min(spec.serve_batch, 8),
        serve_seq_len=spec.serve_seq_len if not quick else min(spec.serve_seq_len, 32),
        serve_new_tokens=serve_new_tokens or (4 if quick else 16),
        job_batches=job_batches or (1 if quick else 3),
        infer_batch=spec.infer_batch if not quick else min(spec.infer_batch, 4),
        infer_seq_len=spec.infer_seq_len if not quick else min(spec.infer_seq_len, 32),
        seed=seed, clock=clock, progress=progress or (lambda msg: None),
    )


def run_suite(settings: Settings, sections: Sequence[str] = DEFAULT_SECTIONS) -> dict[str, Any]:
    """Load the model once, run ``sections`` in order; returns the JSON-ready record."""
    unknown = [x for x in sections if x not in RUNNERS]
    if unknown:
        raise ValueError(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if "job" in sections and settings.spec.kind != "causal-lm":
        raise ValueError(f"the job section trains a causal LM; --model {settings.spec.name} is not one (use smollm2)")
    meta = machine_info(settings.device)
    settings.progress(f"loading {settings.spec.name}")
    t0 = time.perf_counter()
    base = settings.spec.loader().to(device=settings.device, dtype=settings.dtype).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    load_s = time.perf_counter() - t0
    rows: list[Row] = []
    details: dict[str, Any] = {}
    for name in sections:
        settings.progress(f"section {name}")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            section_rows, section_details = RUNNERS[name](settings, base)
        rows += section_rows
        details[name] = section_details
        details[name + "_seconds"] = round(time.perf_counter() - t0, 1)
        if settings.device.startswith("cuda"):
            torch.cuda.empty_cache()
    s = settings
    return {
        **meta,
        "settings": {"model": s.spec.name, "model_description": s.spec.description, "device": s.device,
                     "dtype": str(s.dtype).replace("torch.", ""), "rank": s.rank, "alpha": 2 * s.rank,
                     "dropout": s.dropout, "batch": s.batch, "seq_len": s.seq_len, "warmup": s.warmup,
                     "repeats": s.repeats, "serve_counts": list(s.serve_counts), "serve_batch": s.serve_batch,
                     "serve_seq_len": s.serve_seq_len, "serve_new_tokens": s.serve_new_tokens, "job_batches": s.job_batches,
                     "infer_batch": s.infer_batch, "infer_seq_len": s.infer_seq_len, "combine_weights": list(s.combine_weights), "seed": s.seed,
                     "clock": resolve_clock(s.device, s.clock),
                     "targets": s.spec.targets, "sections": list(sections)},
        "model_load_seconds": round(load_s, 1),
        "rows": rows,
        "details": details,
    }


def render(record: dict[str, Any]) -> str:
    """The printed report: settings, machine, the ratio table and the per-configuration tables."""
    st = record["settings"]
    header = (f"asymlora bench: model {st['model']} ({st['model_description']}); {st['device']} {st['dtype']}; "
              f"r = {st['rank']}, alpha = {st['alpha']}, adapter dropout {st['dropout']}; "
              f"training batch {st['batch']} × {st['seq_len']} tokens; {st['warmup']} warm-up + {st['repeats']} "
              f"interleaved rounds, medians of {clock_name(st['device'], st['clock'])}"
              + (f"; inference {st['infer_batch']} × {st['infer_seq_len']}" if "merged" in st["sections"] else "")
              + (f"; serving {st['serve_batch']} rows × {st['serve_seq_len']} tokens" if "multi" in st["sections"] else "")
              + (f"; generation max({st['serve_batch']}, N) rows × ({st['serve_seq_len']} + "
                 f"{st.get('serve_new_tokens', 16)} new tokens)" if "serve" in st["sections"] else "")
              + (f"; job section: {st.get('job_batches', 3)} real batch(es) of 8 × ≤ 256 tokens, r = 32 on q/v, dropout 0"
                 if "job" in st["sections"] else "")
              + f".\n{machine_line(record)}")
    parts = [format_table(record["rows"], header)]
    for name in ("saved", "step"):
        sec = record["details"].get(name)
        if sec:
            t = sec["absolute_table"]
            parts.append(format_absolute(t["title"], t["columns"], t["rows"]))
    comb = record["details"].get("combine")
    if comb:
        parts.append(f"asymlora.combine on adapters whose A differ: {comb['refuses-different-A']}")
    held = [r for r in record["rows"] if r.held is not None]
    failed = [r for r in held if not r.held]
    parts.append(f"Targets: {len(held) - len(failed)} of {len(held)} held"
                 + ("." if not failed else "; not held: " + "; ".join(
                     f"#{record['rows'].index(r) + 1} {r.metric} ({r.subject} vs {r.reference}: "
                     f"{r.ratio:.3g}, target {r.target})" for r in failed)))
    return "\n\n".join(parts)


def count_failed(record: dict[str, Any]) -> int:
    return sum(1 for r in record["rows"] if r.held is False)
