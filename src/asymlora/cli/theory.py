"""``asymlora theory``: the paper's lemmas, Theorem B.3, the extreme example, the logistic-regression
case and the generalisation bounds, computed and printed as tables, with plots and a JSON record."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from asymlora import read_factors
from asymlora.atomic import atomic_write_json
from asymlora.plots import new_figure, save_figure
from asymlora.provenance import environment
from asymlora.theory.bounds import bound_table, equal_bound_rank
from asymlora.theory.least_squares import lemma_check
from asymlora.theory.nonlinear import digits_experiment
from asymlora.theory.theorem import extreme_example, theorem_experiment

SECTIONS = ("lemmas", "theorem", "extreme", "nonlinear", "bounds")
DEFAULT_LAYERS = "1024x1024*48"  # RoBERTa-large query + value, 24 layers: the paper's GLUE setting

DESCRIPTION = """\
Numerical checks of the theory in Zhu et al. (ICML 2024), Appendix B:

  lemmas     Lemma B.1 (A frozen: B* = ΔΣQᵀ(QΣQᵀ)⁻¹) and Lemma B.2 (B frozen: A* = UᵀΔ) against
             exact least squares on n samples (n growing) and against gradient descent on a real
             asymlora adapter layer (b-only, a-only).
  theorem    Theorem B.3 by Monte Carlo: P[L(A*,U) ≥ L(Q,B*)] and the mean gap as d/r grows, for
             isotropic / low-rank / decaying Σ and Gaussian / low-rank Δ (d_in = d_out = d), beside
             the paper's gap (1 − r/d)·Tr[U_X U_Xᵀ ΔᵀΔ] for low-rank Σ. Losses are excess losses as
             fractions of Tr[ΔΣΔᵀ].
  extreme    §B.1.1's extreme example: rank(Σ) ≤ r makes a random frozen A as expressive as a tuned one.
  nonlinear  §B.1.2: multiclass logistic regression on scikit-learn's digits, A frozen vs B frozen.
  bounds     Lemma B.5's generalisation bounds for LoRA, B-only and A-only, and the rank at which
             B-only meets LoRA's bound.

Writes OUT/theory.json (all numbers, the arguments, seed, versions, git commit) and PNG plots
OUT/theorem_probability.png, OUT/theorem_gap.png, OUT/nonlinear.png. The default sizes finish in
about a minute on 2 CPU cores; --quick takes a few seconds.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "theory", help="check the paper's lemmas, theorem and bounds numerically; tables + plots",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/theory", help="folder for theory.json and the PNGs (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="small sizes (a few seconds; for tests and smoke checks)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    p.add_argument("--rank", type=int, default=4, help="adapter rank r for lemmas/theorem/extreme (default: %(default)s)")
    p.add_argument("--ds", default=None,
                   help="comma-separated dimensions d for the theorem (default 8,16,32,64,128,256; quick 8,16,32)")
    p.add_argument("--trials", type=int, default=None, help="Monte Carlo trials per cell (default 150; quick 40)")
    p.add_argument("--r-x", type=int, default=None, help="rank of the low-rank Σ family (default: --rank, as the paper)")
    p.add_argument("--decay", type=float, default=1.0,
                   help="eigenvalue decay exponent of the decaying Σ family, λ_k ∝ k^-decay (default: %(default)s)")
    p.add_argument("--bound-layers", default=DEFAULT_LAYERS,
                   help="adapted matrices for the bounds as D_INxD_OUT*COUNT, comma-separated "
                        "(default %(default)s: RoBERTa-large query+value)")
    p.add_argument("--adapter", default=None,
                   help="read the bounds' layer shapes from a saved adapter folder (asymlora or PEFT) instead")
    p.add_argument("--bound-rank", type=int, default=8, help="LoRA rank for the bounds (default: %(default)s)")
    p.add_argument("--bits", type=float, default=32, help="q, bits per trained number (default: %(default)s)")
    p.add_argument("--sigma", type=float, default=0.5,
                   help="sub-Gaussian parameter of the loss; 0.5 for a loss in [0, 1] (default: %(default)s)")
    p.add_argument("--n", type=int, default=3668, help="training examples n for the bounds (default %(default)s, MRPC)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default %(default)s: the problems are small, and extra threads mostly "
                        "spin-wait when the machine is shared)")
    p.set_defaults(func=main)


# ---- helpers ----------------------------------------------------------------------------------------

def _table(headers: list[str], rows: list[list], floatfmt: str = ".4f") -> str:
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in body])


def _parse_layers(spec: str) -> list[tuple[int, int]]:
    dims = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            shape, _, count = part.partition("*")
            d_in, d_out = shape.lower().split("x")
            dims += [(int(d_in), int(d_out))] * int(count or 1)
        except ValueError:
            raise SystemExit(f"asymlora theory: bad --bound-layers entry {part!r}; expected D_INxD_OUT or "
                             "D_INxD_OUT*COUNT, e.g. 1024x1024*48") from None
    if not dims:
        raise SystemExit("asymlora theory: --bound-layers is empty")
    return dims


def _ints(spec: str, name: str) -> list[int]:
    try:
        return [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"asymlora theory: {name} must be comma-separated integers, got {spec!r}") from None


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 78 - len(title)))


# ---- sections ---------------------------------------------------------------------------------------

def _lemmas(args, quick: bool) -> dict:

    ns = (100, 1_000, 10_000) if quick else (100, 1_000, 10_000, 100_000)
    res = lemma_check(32, 32, args.rank, ns, gd_n=500 if quick else 2_000, gd_steps=150 if quick else 300,
                      seed=args.seed)
    _section("Lemmas B.1 / B.2 vs exact least squares on n samples")
    print(f"d_in = d_out = {res['d_in']}, r = {res['rank']}, σ² = {res['noise_var']}, Σ eigenvalues ∝ k^-{res['decay']}; "
          f"closed forms: L(Q,B*) = {res['lemma_b1_loss']:.6f} (B.1), L(A*,U) = {res['lemma_b2_loss']:.6f} (B.2)")
    print(_table(["n", "‖B̂−B*‖/‖B*‖", "(L̂_B−L*)/L*", "‖Â−A*‖/‖A*‖", "(L̂_A−L*)/L*"],
                 [[r["n"], r["b_rel_err"], r["b_loss_rel_diff"], r["a_rel_err"], r["a_loss_rel_diff"]]
                  for r in res["convergence"]], ".2e"))
    print("\nGradient descent on a real asymlora layer (its own frozen factor; n samples):")
    print(_table(["preset", "n", "steps", "GD train loss", "exact lstsq", "rel gap", "GD population", "lemma optimum"],
                 [[k, v["n"], v["steps"], v["gd_train_loss"], v["exact_train_loss"], f"{v['train_rel_gap']:.1e}",
                   v["gd_population_loss"], v["lemma_loss"]] for k, v in res["gradient_descent"].items()], ".6f"))
    return res


def _theorem(args, quick: bool, out: Path) -> list[dict]:

    ds = _ints(args.ds, "--ds") if args.ds else ([8, 16, 32] if quick else [8, 16, 32, 64, 128, 256])
    trials = args.trials or (40 if quick else 150)
    cells = theorem_experiment(ds, args.rank, trials, r_x=args.r_x, decay=args.decay, seed=args.seed)
    _section(f"Theorem B.3: random Q vs random U, r = {args.rank}, {trials} trials per cell")
    print("P = P[L(A*,U) ≥ L(Q,B*)] (B-only at least as good); losses: excess / Tr[ΔΣΔᵀ]; "
          "gap = L(A*,U) − L(Q,B*); paper = (1 − r/d)·Tr[U_X U_Xᵀ ΔᵀΔ] (low-rank Σ)")
    print(_table(["Σ", "Δ", "d", "d/r", "P", "±se", "gap", "±se", "paper", "B-only", "A-only", "LoRA"],
                 [[c.sigma, c.delta, c.d, f"{c.ratio:g}", c.prob_b_wins, c.prob_se, c.gap_mean, c.gap_se,
                   c.paper_gap, c.loss_b_only, c.loss_a_only, c.loss_lora] for c in cells], ".3f"))
    _plot_theorem(cells, out)
    return [c.to_dict() for c in cells]


def _plot_theorem(cells, out: Path) -> None:

    groups: dict[tuple[str, str], list] = {}
    for c in cells:
        groups.setdefault((c.sigma, c.delta), []).append(c)
    for what, fname, ylabel in (("prob", "theorem_probability.png", "P[L(A*,U) ≥ L(Q,B*)]"),
                                ("gap", "theorem_gap.png", "mean L(A*,U) − L(Q,B*)  (/ Tr[ΔΣΔᵀ])")):
        fig, (ax,) = new_figure(1, 1, figsize=(6.5, 4.2))
        paper_drawn = False
        for (sigma, delta), cs in groups.items():
            x = [c.ratio for c in cs]
            if what == "prob":
                ax.errorbar(x, [c.prob_b_wins for c in cs], yerr=[c.prob_se for c in cs], marker="o",
                            capsize=2, label=f"Σ {sigma}, Δ {delta}")
            else:
                ax.errorbar(x, [c.gap_mean for c in cs], yerr=[c.gap_se for c in cs], marker="o", capsize=2,
                            label=f"Σ {sigma}, Δ {delta}")
                if cs[0].paper_gap is not None and not paper_drawn:
                    ax.plot(x, [c.paper_gap for c in cs], "k--", lw=1.2, zorder=5,
                            label="paper: (1−r/d)·Tr[U_X U_Xᵀ ΔᵀΔ] (low-rank Σ)")
                    paper_drawn = True
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"d / r  (r = {cells[0].rank})")
        ax.set_ylabel(ylabel)
        if what == "prob":
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            ax.set_ylim(-0.02, 1.02)
        else:
            ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_title("Theorem B.3: freezing A (train B) vs freezing B (train A)")
        ax.legend(fontsize=7)
        save_figure(fig, out / fname)


def _extreme(args) -> list[dict]:

    r = args.rank
    rows = [extreme_example(64, 64, r, r_x=rx, seed=args.seed) for rx in (max(1, r // 2), r, 2 * r)]
    _section("Extreme example (§B.1.1): rank(Σ) = r_X, random Q vs tuned A")
    print("rebuild = max|B Q X − B_* A_* X| / max|B_* A_* X| with B = B_* A_* F (QF)⁺; "
          "excess losses / Tr[ΔΣΔᵀ]")
    print(_table(["d", "r", "r_X", "rebuild err", "B-only (Q)", "LoRA (tuned)", "A-only (U)"],
                 [[e.d_in, e.rank, e.r_x, f"{e.rebuild_rel_error:.1e}", f"{e.excess_b_only:.2e}",
                   f"{e.excess_lora:.2e}", f"{e.excess_a_only:.3f}"] for e in rows]))
    return [e.to_dict() for e in rows]


def _nonlinear(args, quick: bool, out: Path) -> dict:

    configs = [("pixels", "new-classes")] if quick else [("pixels", "new-classes"), ("pca", "permuted")]
    ranks, seeds = ((2,), (args.seed,)) if quick else ((1, 2, 4, 8), tuple(args.seed + i for i in range(3)))
    res = {}
    for features, task in configs:
        rows = digits_experiment(ranks, seeds, task=task, features=features, max_iter=60 if quick else 200)
        shape = "10 × 64" if features == "pixels" else "10 × 10"
        _section(f"§B.1.2 logistic regression, digits: {features} features (W {shape}), task {task}")
        print(f"mean ± sd over {len(seeds)} seed(s); linear = Lemma B.1/B.2 excess with Δ = W_full − W0, Σ = Cov[x]")
        print(_table(["method", "r", "trained", "train CE", "±sd", "test CE", "±sd", "test acc", "±sd", "linear"],
                     [[r.method, r.rank or "-", r.trainable, r.train_loss, r.train_loss_sd, r.test_loss,
                       r.test_loss_sd, r.test_acc, r.test_acc_sd, r.linear_excess] for r in rows], ".3f"))
        res[f"{features}/{task}"] = [r.to_dict() for r in rows]
    _plot_nonlinear(res, out)
    return res


def _plot_nonlinear(res: dict, out: Path) -> None:

    fig, axes = new_figure(1, len(res), figsize=(5.2 * len(res), 4.0))
    for ax, (name, rows) in zip(axes, res.items()):
        for method, style in (("B-only", "o-"), ("A-only", "s-"), ("LoRA", "^-")):
            rs = [r for r in rows if r["method"] == method]
            ax.errorbar([r["rank"] for r in rs], [r["test_loss"] for r in rs], yerr=[r["test_loss_sd"] for r in rs],
                        fmt=style, capsize=2, label=method)
        for ref, ls in (("full", "--"), ("bias", ":")):
            val = next(r["test_loss"] for r in rows if r["method"] == ref)
            ax.axhline(val, color="grey", ls=ls, lw=1, label=f"{ref} fine-tuning")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("rank r")
        ax.set_ylabel("test cross-entropy")
        ax.set_title(f"digits {name}")
        ax.legend(fontsize=7)
    save_figure(fig, out / "nonlinear.png")


def _bounds(args) -> dict:

    if args.adapter:

        factors = read_factors(args.adapter)
        dims = [(int(a.shape[1]), int(b.shape[0])) for a, b in factors.values()]
        source = f"adapter {args.adapter} ({len(dims)} layers)"
    else:
        dims = _parse_layers(args.bound_layers)
        source = f"{args.bound_layers} ({len(dims)} matrices)"
    rows = bound_table(dims, args.bound_rank, args.bits, args.sigma, args.n)
    exact_b, _ = equal_bound_rank(dims, args.bound_rank, "B")
    _section("Lemma B.5 generalisation bounds")
    print(f"layers: {source}; q = {args.bits:g} bits, σ = {args.sigma:g}, n = {args.n}; "
          f"bound = √(2 r q σ² ln2 / n · Σ D)")
    print(_table(["tuned", "rank", "trained numbers", "bound", "÷ LoRA"],
                 [[r["tuned"], r["rank"], r["trainable"], r["bound"], r["ratio_to_lora"]] for r in rows], ".4f"))
    print(f"B-only meets LoRA r={args.bound_rank}'s bound at rank {exact_b:g}")
    return {"layers": source, "dims": dims, "rows": rows, "b_only_equal_rank": exact_b}


# ---- entry point ---------------------------------------------------------------------------------------

def main(args: argparse.Namespace) -> int:
    import torch

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"asymlora theory: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if args.rank < 1:
        print("asymlora theory: --rank must be >= 1", file=sys.stderr)
        return 2
    if args.threads < 1:
        print("asymlora theory: --threads must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run_sections(args, sections, out)
    finally:
        torch.set_num_threads(threads_before)  # leave the caller's setting as it was (in-process use)


def _run_sections(args: argparse.Namespace, sections: list[str], out: Path) -> int:
    import torch


    torch.manual_seed(args.seed)
    record: dict = {"command": "asymlora theory", "args": {k: v for k, v in vars(args).items() if k != "func"}}
    timings = {}
    for name in sections:
        t0 = time.perf_counter()
        if name == "lemmas":
            record["lemmas"] = _lemmas(args, args.quick)
        elif name == "theorem":
            record["theorem"] = _theorem(args, args.quick, out)
        elif name == "extreme":
            record["extreme"] = _extreme(args)
        elif name == "nonlinear":
            record["nonlinear"] = _nonlinear(args, args.quick, out)
        elif name == "bounds":
            record["bounds"] = _bounds(args)
        timings[name] = round(time.perf_counter() - t0, 2)
    record["seconds"] = timings
    record["environment"] = _environment(args.seed)
    atomic_write_json(out / "theory.json", json.loads(json.dumps(record, default=str)))
    pngs = sorted(p.name for p in out.glob("*.png"))
    print(f"\nwrote {out / 'theory.json'}" + (f" and {', '.join(pngs)}" if pngs else "")
          + f"  ({sum(timings.values()):.1f} s)")
    return 0


def _environment(seed: int) -> dict:

    return environment(seed)
