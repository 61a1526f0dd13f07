"""The benchmark's sections. Each takes a :class:`Settings` and the loaded base model, measures every
configuration it compares in one run, and returns ratio :class:`~asymlora.bench.report.Row` s plus the
absolute figures (for the JSON file and the per-method tables).

* ``saved``: bytes kept for backward per adapted layer and for the whole model, and
* ``step``: step time and peak step memory, both for the floor, PEFT LoRA / LoRA-FA / VeRA and
  asymlora LoRA / B-only.
* ``file``: adapter folder sizes.
* ``merged``: inference time of merged adapters against the base model.
* ``combine``: exact combination of shared-A adapters against PEFT's ``add_weighted_adapter``.
* ``multi``: one batch whose rows use different adapters, against PEFT's ``adapter_names=``.
* ``serve``: generation for requests of N different adapters, and their memory (``asymlora.bench.serve``).
* ``job``: training tokens/s on the real batches of the instruction-tuning job (``asymlora.bench.job``).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

import asymlora
from asymlora.adapter_file import AdapterFolder
from asymlora.combine import CombineError, combine
from asymlora.serving import load_many

from .job import job_section
from .measure import (
    SavedTensorTracer,
    clock_name,
    median,
    model_state_bytes,
    optimizer_state_bytes,
    peak_memory,
    time_interleaved,
)
from .methods import (
    BENCH_CONFIGS,
    EXTRA_CONFIGS,
    LABELS,
    Prepared,
    adapter_modules,
    prepare,
)
from .models import BenchModel, make_batch
from .report import Row, fmt_value
from .serve import serve_section

SECTIONS = ("saved", "step", "file", "merged", "combine", "multi", "serve", "job")
# run when no --sections are named: "job" needs SmolLM2's tokenizer and the natural-instructions data, so it is asked for
DEFAULT_SECTIONS = SECTIONS[:-1]


@dataclass
class Settings:
    spec: BenchModel
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    rank: int = 8
    dropout: float = 0.1
    batch: int = 8
    seq_len: int = 128
    warmup: int = 2
    repeats: int = 7
    serve_counts: tuple[int, ...] = (1, 4, 16)
    serve_batch: int = 16
    serve_seq_len: int = 64
    serve_new_tokens: int = 16
    job_batches: int = 3
    infer_batch: int = 8
    infer_seq_len: int = 128
    combine_weights: tuple[float, ...] = (1.0, 0.5, -0.5)
    seed: int = 0
    clock: str = "auto"  # "wall", "cpu" (process CPU time) or "auto" (wall on CUDA, CPU time on the CPU)
    progress: Callable[[str], None] = field(default=lambda msg: None)

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len

    @property
    def on_minilm(self) -> bool:
        return self.spec.name == "minilm"

    @property
    def floor_step_target(self) -> float | None:
        """Issue 17's bound on B-only step time / the frozen floor's: MiniLM q/v 1.03, SmolLM2 every linear 1.10."""
        return {"minilm": 1.03, "smollm2": 1.10, "smollm2-shaped": 1.10}.get(self.spec.name)

    @property
    def floor_peak_target(self) -> float | None:
        """Issue 17's bound on B-only peak step memory / the floor's (SmolLM2 every linear): 1.05."""
        return 1.05 if self.spec.name in ("smollm2", "smollm2-shaped") else None


def _label(m: str) -> str:
    return LABELS[m]


# ---- saved bytes, step time, peak memory -------------------------------------------------------------------

def _stepper(p: Prepared, batch: dict) -> Callable[[], None]:
    def step() -> None:
        if p.optimizer is not None:
            p.optimizer.zero_grad(set_to_none=True)
        out = p.model(**batch)
        out.loss.backward()
        if p.optimizer is not None:
            p.optimizer.step()
    return step


def _group_key(name: str, d_in: int, d_out: int) -> str:
    leaf = name.rsplit(".", 1)[-1]
    return f"{leaf} ({d_in}→{d_out})"


def _saved_by_method(s: Settings, preps: dict[str, Prepared], batch: dict) -> dict[str, dict[str, Any]]:
    saved: dict[str, dict[str, Any]] = {}
    tokens = s.tokens
    for m, p in preps.items():
        layers = adapter_modules(p.model)
        with SavedTensorTracer(p.model, layers) as tracer:
            out = p.model(**batch)
        del out
        groups: dict[str, dict[str, Any]] = {}
        for name, ls in tracer.per_layer.items():
            g = groups.setdefault(_group_key(name, ls.d_in, ls.d_out),
                                  {"d_in": ls.d_in, "d_out": ls.d_out, "layers": 0, "max_branch_bytes": 0,
                                   "branch_shapes": None, "keeps_d_in_sized": False})
            g["layers"] += 1
            if g["branch_shapes"] is None or ls.branch_bytes > g["max_branch_bytes"]:
                g["branch_shapes"] = [list(v[1]) for v in ls.branch.values()]  # of the layer keeping the most
            g["max_branch_bytes"] = max(g["max_branch_bytes"], ls.branch_bytes)
            g["keeps_d_in_sized"] |= ls.keeps_d_in_sized(tokens)
        saved[m] = {"total_bytes": tracer.total_bytes, "groups": groups,
                    "branch_bytes": sum(ls.branch_bytes for ls in tracer.per_layer.values())}
    return saved


def saved_section(s: Settings, base: nn.Module) -> tuple[list[Row], dict[str, Any]]:
    """Bytes kept for backward by each adapter branch and by the whole model (one traced forward each)."""
    spec = s.spec
    batch = make_batch(spec, base, s.batch, s.seq_len, s.device, seed=s.seed)
    tokens = s.tokens
    s.progress("saved: tracing the tensors autograd keeps for backward")
    preps = {m: prepare(m, base, spec, rank=s.rank, dropout=s.dropout, seed=s.seed) for m in BENCH_CONFIGS}
    saved = _saved_by_method(s, preps, batch)
    for p in preps.values():
        p.remove_hooks()
    rows: list[Row] = []
    r = s.rank
    bonly, lora = saved["asym-b-only"]["groups"], saved["peft-lora"]["groups"]
    for key, g in bonly.items():
        target = r / g["d_in"]
        row = Row("saved", f"bytes kept for backward by one adapter branch, {key}", _label("asym-b-only"),
                  _label("peft-lora"), g["max_branch_bytes"] / tokens, lora[key]["max_branch_bytes"] / tokens,
                  "B/token", bound=target, target=f"≤ r/d_in = {target:.4f}, nothing d_in-wide",
                  note=f"{g['layers']} layers; B-only keeps {g['branch_shapes']}")
        if g["keeps_d_in_sized"]:
            row.held = False
        rows.append(row)
    seen_d_in = set()
    for key, g in sorted(bonly.items(), key=lambda kv: -kv[1]["d_in"]):
        if g["d_in"] in seen_d_in:
            continue  # one row per input width: the other layers of that width keep the same
        seen_d_in.add(g["d_in"])
        fa = saved["peft-lorafa"]["groups"][key]
        rows.append(Row("saved", f"bytes kept for backward by one adapter branch, {key}", _label("asym-b-only"),
                        _label("peft-lorafa"), g["max_branch_bytes"] / tokens, fa["max_branch_bytes"] / tokens,
                        "B/token", note=f"LoRA-FA keeps {fa['branch_shapes']}"))
    for ref in ("peft-lora", "peft-lorafa", "floor"):
        rows.append(Row("saved", "bytes kept for backward, whole model", _label("asym-b-only"), _label(ref),
                        saved["asym-b-only"]["total_bytes"] / tokens, saved[ref]["total_bytes"] / tokens, "B/token"))
    keys = list(bonly)
    table = [[_label(m), f"{preps[m].trainable:,}"]
             + [fmt_value(saved[m]["groups"][k]["max_branch_bytes"] / tokens, "B/token")
                if k in saved[m]["groups"] else "—" for k in keys]
             + [fmt_value(saved[m]["total_bytes"] / tokens, "B/token")] for m in BENCH_CONFIGS]
    columns = (["configuration", "trainable params"] + [f"branch keeps, {k}" for k in keys] + ["whole model keeps"])
    return rows, {"tokens": tokens, "saved": saved, "trainable": {m: p.trainable for m, p in preps.items()},
                  "absolute_table": {"title": "Bytes kept for backward, per token (saved section)",
                                     "columns": columns, "rows": table}}


def step_section(s: Settings, base: nn.Module) -> tuple[list[Row], dict[str, Any]]:
    """Step time (interleaved, median) and peak step memory of every configuration."""
    spec = s.spec
    batch = make_batch(spec, base, s.batch, s.seq_len, s.device, seed=s.seed)
    s.progress(f"step: preparing {len(BENCH_CONFIGS)} configurations")
    configs = BENCH_CONFIGS + (EXTRA_CONFIGS if s.dropout > 0 else ())
    preps = {m: prepare(m, base, spec, rank=s.rank, dropout=s.dropout, seed=s.seed) for m in configs}
    # an identical second floor, timed like the others: the run-to-run noise of this run
    control = prepare("floor", base, spec, rank=s.rank, dropout=s.dropout, seed=s.seed)
    s.progress(f"step: timing ({s.warmup} warm-up + {s.repeats} rounds × {len(configs) + 1} configurations)")
    fns = {m: _stepper(p, batch) for m, p in preps.items()}
    fns["floor-control"] = _stepper(control, batch)
    times = time_interleaved(fns, warmup=s.warmup, repeats=s.repeats, device=s.device, clock=s.clock,
                             progress=lambda msg: s.progress(f"step: {msg}"))
    step_s = {m: median(t) for m, t in times.items()}

    # peak memory of one step (after the warm-up, so optimizer state exists), gradients released first
    s.progress("step: measuring peak step memory")
    floor_state = model_state_bytes(preps["floor"].model)
    peak: dict[str, dict[str, int]] = {}
    for m, p in preps.items():
        if p.optimizer is not None:
            p.optimizer.zero_grad(set_to_none=True)
        step_peak = peak_memory(fns[m], s.device)
        resting = model_state_bytes(p.model) - floor_state + optimizer_state_bytes(p.optimizer)
        peak[m] = {"step_peak_above_start": step_peak, "adapter_state": resting, "total": step_peak + resting}
    for p in [*preps.values(), control]:
        p.remove_hooks()

    rows = [Row("step", f"step time (median, {clock_name(s.device, s.clock)})", _label("asym-b-only"), _label("peft-lora"),
                step_s["asym-b-only"], step_s["peft-lora"], "s", bound=1.0, target="≤ 1.00")]
    bound = s.floor_step_target
    rows.append(Row("step", f"step time (median, {clock_name(s.device, s.clock)})", _label("asym-b-only"), _label("floor"),
                    step_s["asym-b-only"], step_s["floor"], "s", bound=bound,
                    target=f"≤ {bound:.2f} (issue 17)" if bound else ""))
    if "asym-b-only-projection" in step_s:
        for ref in ("floor", "asym-b-only", "peft-lora"):
            rows.append(Row("step", f"step time (median, {clock_name(s.device, s.clock)})",
                            _label("asym-b-only-projection"), _label(ref), step_s["asym-b-only-projection"],
                            step_s[ref], "s", bound=bound if ref == "floor" else None,
                            target=f"≤ {bound:.2f} (issue 17)" if bound and ref == "floor" else "",
                            note="dropout_on='projection': another regulariser" if ref == "floor" else ""))
    for other in ("peft-lorafa", "peft-vera"):
        rows.append(Row("step", f"step time (median, {clock_name(s.device, s.clock)})", _label("asym-b-only"), _label(other),
                        step_s["asym-b-only"], step_s[other], "s"))
    rows.append(Row("step", f"step time (median, {clock_name(s.device, s.clock)})", _label("asym-lora"), _label("peft-lora"),
                    step_s["asym-lora"], step_s["peft-lora"], "s"))
    rows.append(Row("step", f"step time (median, {clock_name(s.device, s.clock)})", "floor, second copy (noise control)", _label("floor"),
                    step_s["floor-control"], step_s["floor"], "s", note="identical configurations: this run's noise"))
    rows.append(Row("step", "peak step memory", _label("asym-b-only"), _label("peft-lora"),
                    peak["asym-b-only"]["total"], peak["peft-lora"]["total"], "B", bound=1.0 - 1e-9, target="< 1.00"))
    rows.append(Row("step", "peak step memory", _label("asym-b-only"), _label("peft-lorafa"),
                    peak["asym-b-only"]["total"], peak["peft-lorafa"]["total"], "B", bound=1.0, target="≤ 1.00"))
    mem_bound = s.floor_peak_target
    rows.append(Row("step", "peak step memory", _label("asym-b-only"), _label("floor"),
                    peak["asym-b-only"]["total"], peak["floor"]["total"], "B", bound=mem_bound,
                    target=f"≤ {mem_bound:.2f} (issue 17)" if mem_bound else "",
                    note="both measured the same way: step peak above start + adapter and optimizer state"))
    table = [[_label(m), f"{preps[m].trainable:,}",
              f"{fmt_value(step_s[m], 's')} ({fmt_value(min(times[m]), 's')}–{fmt_value(max(times[m]), 's')})",
              fmt_value(peak[m]["step_peak_above_start"], "B"), fmt_value(peak[m]["adapter_state"], "B"),
              fmt_value(peak[m]["total"], "B")] for m in configs]
    columns = ["configuration", "trainable params", "step time median (min–max)", "step peak above start",
               "adapter + optimizer state", "peak step memory"]
    return rows, {"step_seconds": times, "step_median_s": step_s, "peak_memory": peak,
                  "absolute_table": {"title": "Step time and memory (step section)", "columns": columns, "rows": table}}


# ---- file sizes ---------------------------------------------------------------------------------------------

def _folder_bytes(path: Path, names: tuple[str, ...]) -> dict[str, int]:
    return {n: (path / n).stat().st_size for n in names if (path / n).is_file()}


def file_section(s: Settings, base: nn.Module) -> tuple[list[Row], dict[str, Any]]:
    spec = s.spec
    out: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for m in ("asym-b-only", "asym-lora", "peft-lora", "peft-vera"):
            p = prepare(m, base, spec, rank=s.rank, dropout=s.dropout, seed=s.seed)
            folder = tmp / m
            if m.startswith("asym"):
                asymlora.save_adapter(p.model, folder)
                out[m] = _folder_bytes(folder, ("adapter.safetensors", "adapter_config.json"))
                if m == "asym-b-only":
                    dims = [(layer.d_in, layer.d_out) for _, layer in asymlora.adapted_layers(p.model)]
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    p.model.save_pretrained(str(folder))
                out[m] = _folder_bytes(folder, ("adapter_model.safetensors", "adapter_config.json"))
    total = {m: sum(v.values()) for m, v in out.items()}
    frac = sum(d_out for _, d_out in dims) / sum(d_in + d_out for d_in, d_out in dims)
    slack = 4096
    bound = frac + slack / total["peft-lora"]
    tensors = {m: v.get("adapter.safetensors", v.get("adapter_model.safetensors", 0)) for m, v in out.items()}
    meta = {m: v.get("adapter_config.json", 0) for m, v in out.items()}
    rows = [
        Row("file", "adapter folder (tensors + config)", _label("asym-b-only"), _label("peft-lora"),
            total["asym-b-only"], total["peft-lora"], "B", bound=bound,
            target=f"≤ Σd_out/Σ(d_in+d_out) = {frac:.4f} (+ 4 KiB)",
            note=f"asymlora config JSON {fmt_value(meta['asym-b-only'], 'B')}, PEFT's {fmt_value(meta['peft-lora'], 'B')}"),
        Row("file", "adapter tensor file only", _label("asym-b-only"), _label("peft-lora"),
            tensors["asym-b-only"], tensors["peft-lora"], "B", bound=bound, target=f"≤ {frac:.4f} (+ 4 KiB)"),
        Row("file", "adapter folder (tensors + config)", _label("asym-lora"), _label("peft-lora"),
            total["asym-lora"], total["peft-lora"], "B"),
        Row("file", "adapter folder (tensors + config)", _label("asym-b-only"), _label("peft-vera"),
            total["asym-b-only"], total["peft-vera"], "B", note="VeRA saves its shared projections by default"),
    ]
    return rows, {"files": out, "fraction_d_out": frac, "layers": len(dims)}


# ---- merged inference ---------------------------------------------------------------------------------------

def _randomize_trainable(model: nn.Module, seed: int, scale: float = 0.02) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_((torch.randn(p.shape, generator=g) * scale).to(p.dtype))


def merged_section(s: Settings, base: nn.Module) -> tuple[list[Row], dict[str, Any]]:
    spec = s.spec
    batch = make_batch(spec, base, s.infer_batch, s.infer_seq_len, s.device, seed=s.seed, labels=False)
    models: dict[str, nn.Module] = {"base": copy.deepcopy(base).eval(), "base-control": copy.deepcopy(base).eval()}
    merged = prepare("asym-b-only", base, spec, rank=s.rank, dropout=0.0, seed=s.seed).model
    _randomize_trainable(merged, s.seed)
    unmerged = copy.deepcopy(merged)
    unloaded = copy.deepcopy(merged)
    asymlora.merge(merged)
    asymlora.unload(unloaded, merge=True)
    peft_model = prepare("peft-lora", base, spec, rank=s.rank, dropout=0.0, seed=s.seed).model
    _randomize_trainable(peft_model, s.seed)
    peft_merged = peft_model.merge_and_unload()
    models.update({"asym-merged": merged, "asym-unloaded": unloaded, "asym-unmerged": unmerged, "peft-merged": peft_merged})
    for m in models.values():
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)

    def fwd(m: nn.Module) -> Callable[[], None]:
        def call() -> None:
            with torch.inference_mode():
                m(**batch)
        return call

    repeats = max(4 * s.repeats, 5)  # forward passes are short: more rounds for a 1.00 ± 0.02 target
    s.progress(f"merged: timing inference ({s.warmup} warm-up + {repeats} rounds × {len(models)} models)")
    times = time_interleaved({k: fwd(m) for k, m in models.items()}, warmup=s.warmup, repeats=repeats,
                             device=s.device, clock=s.clock, progress=lambda msg: s.progress(f"merged: {msg}"))
    med = {k: median(v) for k, v in times.items()}
    with torch.inference_mode():
        diff = float((models["asym-merged"](**batch).logits.float() - models["asym-unmerged"](**batch).logits.float())
                     .abs().max())
    rows = [
        Row("merged", f"inference time, merged (layers still wrapped; {clock_name(s.device, s.clock)})", "asymlora B-only merged", "base model",
            med["asym-merged"], med["base"], "s", bound=1.02, lower=0.98, target="1.00 ± 0.02"),
        Row("merged", "inference time, merged and unloaded", "asymlora B-only merged + unloaded", "base model",
            med["asym-unloaded"], med["base"], "s", bound=1.02, lower=0.98, target="1.00 ± 0.02"),
        Row("merged", "inference time, unmerged", "asymlora B-only unmerged", "base model",
            med["asym-unmerged"], med["base"], "s"),
        Row("merged", "inference time, merged and unloaded", "PEFT LoRA merge_and_unload", "base model",
            med["peft-merged"], med["base"], "s"),
        Row("merged", "inference time (noise control)", "base model, second copy", "base model",
            med["base-control"], med["base"], "s", note="identical models: shows this run's noise"),
    ]
    return rows, {"seconds": times, "median_s": med, "merged_vs_unmerged_max_abs_logit_diff": diff}


# ---- exact combination --------------------------------------------------------------------------------------

def _rel(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x.double() - y.double()).norm() / max(float(y.double().norm()), 1e-30))


def combine_section(s: Settings, base: nn.Module) -> tuple[list[Row], dict[str, Any]]:
    from peft import LoraConfig, PeftModel, get_peft_model

    spec = s.spec
    weights = list(s.combine_weights)
    k = len(weights)
    base_cpu = copy.deepcopy(base).to("cpu", torch.float32).eval()
    batch = make_batch(spec, base_cpu, 2, min(s.seq_len, 32), "cpu", seed=s.seed, labels=False)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # K B-only adapters, same seed (so the same A), B as after training (random here)
        bdirs = []
        for i in range(k):
            m = copy.deepcopy(base_cpu)
            asymlora.inject(m, asymlora.AdapterConfig.preset("b-only", rank=s.rank, targets=spec.targets, seed=s.seed))
            _randomize_trainable(m, 100 + i, scale=0.05)
            bdirs.append(asymlora.save_adapter(m, tmp / f"bonly{i}"))
            asymlora.export_peft(m, tmp / f"bonly{i}-peft")
        bfactors = [asymlora.read_factors(d) for d in bdirs]
        bscale = AdapterFolder.open(bdirs[0]).scales()
        exact_b = {n: sum(w * bscale[n] * f[n][1].double() @ f[n][0].double() for w, f in zip(weights, bfactors))
                   for n in bfactors[0]}
        combined = combine(copy.deepcopy(base_cpu), bdirs, weights)
        ours_err = max(_rel(layer.delta_weight(), exact_b[n]) for n, layer in asymlora.adapted_layers(combined))
        ref_model = _with_exact_delta(base_cpu, exact_b)
        with torch.no_grad():
            ref_logits = ref_model(**batch).logits
            ours_out = _rel(combined(**batch).logits, ref_logits)
        results["asym-combine"] = {"delta_rel_error": ours_err, "logits_rel_error": ours_out, "rank": s.rank}

        # PEFT: K LoRA adapters (A and B both trained: random here), combined with add_weighted_adapter
        ldirs = []
        for i in range(k):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(200 + i)
                m = get_peft_model(copy.deepcopy(base_cpu), LoraConfig(r=s.rank, lora_alpha=2 * s.rank,
                                                                       target_modules=spec.targets))
            _randomize_trainable(m, 300 + i, scale=0.05)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m.save_pretrained(str(tmp / f"lora{i}"))
            ldirs.append(tmp / f"lora{i}")
        lfactors = [asymlora.read_factors(d) for d in ldirs]
        lscale = 2.0  # lora_alpha / r
        exact_l = {n: sum(w * lscale * f[n][1].double() @ f[n][0].double() for w, f in zip(weights, lfactors))
                   for n in lfactors[0]}

        def peft_combined(dirs: list[Path], exact: dict[str, torch.Tensor], how: str) -> dict[str, Any]:
            model = PeftModel.from_pretrained(copy.deepcopy(base_cpu), str(dirs[0]), adapter_name="t0")
            for i, d in enumerate(dirs[1:], 1):
                model.load_adapter(str(d), adapter_name=f"t{i}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.add_weighted_adapter([f"t{i}" for i in range(len(dirs))], weights, "mix", combination_type=how)
            model.set_adapter("mix")
            err, rank = 0.0, 0
            for name, module in model.named_modules():
                if hasattr(module, "lora_A") and "mix" in getattr(module, "lora_A", {}):
                    short = name[len("base_model.model."):] if name.startswith("base_model.model.") else name
                    a = module.lora_A["mix"].weight.detach().double()
                    b = module.lora_B["mix"].weight.detach().double()
                    delta = module.scaling["mix"] * b @ a
                    err = max(err, _rel(delta, exact[short]))
                    rank = a.shape[0]
            ref = _with_exact_delta(base_cpu, exact)
            with torch.no_grad():
                out_err = _rel(model(**batch).logits, ref(**batch).logits)
            return {"delta_rel_error": err, "logits_rel_error": out_err, "rank": rank}

        for how in ("linear", "svd", "cat"):
            results[f"peft-{how}-lora"] = peft_combined(ldirs, exact_l, how)
        results["peft-linear-bonly"] = peft_combined([d.parent / f"{d.name}-peft" for d in bdirs], exact_b, "linear")
        # asymlora.combine refuses adapters whose A differ (here: an asymlora LoRA adapter, A trained)
        other = copy.deepcopy(base_cpu)
        asymlora.inject(other, asymlora.AdapterConfig.preset("lora", rank=s.rank, targets=spec.targets, seed=s.seed))
        _randomize_trainable(other, 7, 0.05)
        asymlora.save_adapter(other, tmp / "asym-lora")
        try:
            combine(copy.deepcopy(base_cpu), [bdirs[0], tmp / "asym-lora"], [1.0, 1.0])
            refused = "NOT refused"
        except CombineError as err:
            refused = "refused: " + str(err).replace(f"{tmp}/", "")[:200] + " …"
        results["refuses-different-A"] = refused

    ours = results["asym-combine"]
    rows = []
    for key, label in (("peft-linear-lora", "linear"), ("peft-svd-lora", "svd"), ("peft-cat-lora", "cat"),
                       ("peft-linear-bonly", "linear, on the same B-only adapters")):
        theirs = results[key]
        rows.append(Row("combine", f"relative error of the combined ΔW against the exact Σ wᵢΔWᵢ (K={k}, w={weights})",
                        f"asymlora.combine, B-only (rank {ours['rank']})",
                        f"PEFT add_weighted_adapter {label} (rank {theirs['rank']})",
                        ours["delta_rel_error"], theirs["delta_rel_error"], "rel",
                        bound=1e-6, check="value", target="subject ≤ 1e-6 (exact up to round-off)"))
    rows.append(Row("combine", "output (logits) relative error vs the exactly merged ΔW",
                    "asymlora.combine, B-only", "PEFT add_weighted_adapter linear (LoRA)",
                    ours["logits_rel_error"], results["peft-linear-lora"]["logits_rel_error"], "rel"))
    return rows, results


def _with_exact_delta(base: nn.Module, deltas: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``base`` with ΔW added to the named layers' weights (computed in float64)."""
    model = copy.deepcopy(base)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, delta in deltas.items():
            w = modules[name].weight
            w.copy_((w.double() + delta).to(w.dtype))
    return model


# ---- many adapters in one batch ------------------------------------------------------------------------------

def multi_section(s: Settings, base: nn.Module) -> tuple[list[Row], dict[str, Any]]:
    from peft import PeftModel

    spec = s.spec
    n_max = max(s.serve_counts)
    batch = make_batch(spec, base, s.serve_batch, s.serve_seq_len, s.device, seed=s.seed, labels=False)
    rows: list[Row] = []
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dirs, peft_dirs = [], []
        s.progress(f"multi: saving {n_max} B-only adapters (asymlora and PEFT format)")
        for i in range(n_max):
            m = copy.deepcopy(base)
            asymlora.inject(m, asymlora.AdapterConfig.preset("b-only", rank=s.rank, targets=spec.targets, seed=s.seed))
            _randomize_trainable(m, 1000 + i, scale=0.05)
            dirs.append(asymlora.save_adapter(m, tmp / f"task{i}"))
            peft_dirs.append(asymlora.export_peft(m, tmp / f"task{i}-peft"))
            del m
        for n in s.serve_counts:
            rows_ids = [i % n for i in range(s.serve_batch)]
            names = [f"task{i}" for i in range(n)]
            multi = load_many(copy.deepcopy(base), dirs[:n])
            multi.eval()
            peft_model = PeftModel.from_pretrained(copy.deepcopy(base), str(peft_dirs[0]), adapter_name="task0")
            for i in range(1, n):
                peft_model.load_adapter(str(peft_dirs[i]), adapter_name=f"task{i}")
            peft_model.eval()
            single = copy.deepcopy(base)
            asymlora.load_adapter(single, dirs[0])
            single.eval().requires_grad_(False)
            single_layers = dict(asymlora.adapted_layers(single))
            b_by_adapter = [asymlora.read_factors(d) for d in dirs[:n]]
            base_model = copy.deepcopy(base).eval()

            def batched() -> torch.Tensor:  # load_many's default mode ("auto")
                with torch.inference_mode():
                    return multi(**batch, adapter_ids=rows_ids).logits

            def grouped() -> torch.Tensor:  # one expansion per adapter present, as PEFT groups rows
                multi.set_mode("grouped")
                try:
                    with torch.inference_mode():
                        return multi(**batch, adapter_ids=rows_ids).logits
                finally:
                    multi.set_mode("auto")

            def peft_mixed() -> torch.Tensor:
                with torch.inference_mode():
                    return peft_model(**batch, adapter_names=[names[i] for i in rows_ids]).logits

            def one_at_a_time() -> torch.Tensor:
                out = None
                with torch.inference_mode():
                    for k in range(n):
                        rows_k = torch.tensor([i for i, a in enumerate(rows_ids) if a == k], device=s.device)
                        for lname, layer in single_layers.items():
                            layer.lora_B.copy_(b_by_adapter[k][lname][1])
                        part = single(**{key: v.index_select(0, rows_k) for key, v in batch.items()}).logits
                        if out is None:
                            out = torch.empty((len(rows_ids),) + tuple(part.shape[1:]), dtype=part.dtype, device=part.device)
                        out[rows_k] = part
                return out

            def base_only() -> torch.Tensor:
                with torch.inference_mode():
                    return base_model(**batch).logits

            fns = {"asym-batched": batched, "asym-grouped": grouped, "peft-mixed": peft_mixed,
                   "asym-sequential": one_at_a_time, "base": base_only}
            ref = one_at_a_time().float()
            diffs = {"batched-vs-one-at-a-time": float((batched().float() - ref).abs().max()),
                     "grouped-vs-one-at-a-time": float((grouped().float() - ref).abs().max()),
                     "peft-mixed-vs-one-at-a-time": float((peft_mixed().float() - ref).abs().max())}
            s.progress(f"multi: N={n}: timing ({s.warmup} warm-up + {s.repeats} rounds × {len(fns)})")
            times = time_interleaved(fns, warmup=s.warmup, repeats=s.repeats, device=s.device, clock=s.clock)
            med = {k: median(v) for k, v in times.items()}
            details[f"N={n}"] = {"median_s": med, "seconds": times, "max_abs_diff": diffs}
            note = f"{s.serve_batch} rows × {s.serve_seq_len} tokens, row i uses adapter i mod {n}"
            ours = "asymlora load_many"
            rows.append(Row("multi", f"N={n} adapters in one batch: forward time ({clock_name(s.device, s.clock)})", ours,
                            "PEFT adapter_names= mixed batch", med["asym-batched"], med["peft-mixed"], "s",
                            bound=1.0, target="≤ 1.00", note=note))
            rows.append(Row("multi", f"N={n} adapters in one batch: forward time", f"{ours}, mode='grouped'",
                            "PEFT adapter_names= mixed batch", med["asym-grouped"], med["peft-mixed"], "s"))
            rows.append(Row("multi", f"N={n} adapters in one batch: forward time", ours,
                            "asymlora, one adapter at a time", med["asym-batched"], med["asym-sequential"], "s"))
            rows.append(Row("multi", f"N={n} adapters in one batch: forward time", ours,
                            "base model, no adapter", med["asym-batched"], med["base"], "s"))
            rows.append(Row("multi", f"N={n} adapters in one batch: time above the base model (adapter overhead)",
                            ours, "PEFT adapter_names= mixed batch",
                            med["asym-batched"] - med["base"], med["peft-mixed"] - med["base"], "s",
                            note="differences of medians: noisy when small"))
            rows.append(Row("multi", f"N={n}: largest absolute logit difference to one adapter at a time", ours,
                            "PEFT adapter_names= mixed batch",
                            diffs["batched-vs-one-at-a-time"], diffs["peft-mixed-vs-one-at-a-time"], "abs",
                            note="0 = identical"))
            multi = peft_model = single = base_model = None  # freed before the next N is built
    return rows, details


RUNNERS = {"saved": saved_section, "step": step_section, "file": file_section, "merged": merged_section, "combine": combine_section,
           "multi": multi_section, "serve": serve_section, "job": job_section}
