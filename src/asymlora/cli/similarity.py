"""``asymlora similarity``: per-layer similarity of learned A and B across saved adapters (Figure 1)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asymlora.adapter_file import CONFIG_NAME, CheckpointError
from asymlora.atomic import atomic_write_json
from asymlora.experiments.spec import with_added_settings
from asymlora.models.registry import load_model
from asymlora.provenance import environment
from asymlora.similarity import (
    compare_checkpoints,
    format_scenarios,
    format_table,
    plot_scenarios,
    plot_similarity,
    scenario_summary,
    short_labels,
)

DESCRIPTION = """\
Compare the adapters of several runs layer by layer, as in Figure 1 of Zhu et al. (ICML 2024).

For each layer present in every run and each pair of runs, the similarity of the learned A's (their
row spaces: right singular vectors) and of the learned B's (column spaces: left singular vectors) is
‖U_Yᵀ U_X‖²_F / min(r₁, r₂) (Appendix D): 1 when the subspaces coincide, about r/d for unrelated
random subspaces (the "rand" columns). It does not change under B → B C, A → C⁻¹ A.

Each RUN_DIR is an adapter folder (asymlora or PEFT LoRA: adapter_config.json + weights) or a
training-run folder holding one in adapter/. Prints the table (layers × run pairs, A then B) and
writes OUT/similarity.png (heatmap, A and B side by side) and OUT/similarity.json (all matrices, the
arguments, versions). Adapters whose frozen factor is the SVD of W0 (b-only-svd, a-only-svd) are
stored as a seed only: pass --base-model to recompute it.

When every RUN_DIR is a training-run folder, their config.json says each run's task and init (model,
head, method, rank, seed), and the pairs are also grouped into Figure 1's scenarios: (a) same task,
different init; (b) same init, different task; (c) both different — printed as one table and kept
under "scenarios" in the JSON, and drawn per layer in OUT/scenarios.png.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "similarity", help="similarity of learned A and B across saved adapters (paper Figure 1)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more adapter or run folders")
    p.add_argument("--labels", default=None,
                   help="comma-separated names of the runs, in order (default: shortest distinct path tails)")
    p.add_argument("--out", default="results/similarity",
                   help="folder for similarity.png and similarity.json (default: %(default)s)")
    p.add_argument("--max-pairs", type=int, default=6, help="run pairs shown as table columns (default: %(default)s)")
    p.add_argument("--title", default=None, help="title of the figure")
    p.add_argument("--base-model", default=None, metavar="MODEL",
                   help="the base model the adapters were trained on (minilm, mpnet, a Hugging Face folder or hub "
                        "name); needed only when a frozen factor is the SVD of W0 (the *-svd methods)")
    p.add_argument("--rtol", type=float, default=None,
                   help="relative singular-value floor of the numerical rank (default: max(d, r) × eps of the "
                        "stored dtype)")
    p.set_defaults(func=main)


def resolve_adapter_dir(path: str | Path) -> Path:
    """``path`` if it is an adapter folder, ``path/adapter`` if it is a run folder; else ``ValueError``."""
    p = Path(path)
    if (p / CONFIG_NAME).is_file():
        return p
    if (p / "adapter" / CONFIG_NAME).is_file():
        return p / "adapter"
    if not p.exists():
        raise ValueError(f"{p} does not exist")
    raise ValueError(f"{p} is neither an adapter folder ({CONFIG_NAME} inside) nor a run folder "
                     f"(adapter/{CONFIG_NAME} inside)")


def _load_base(name: str, pooling: str = "model"):
    """The base model with the module names of the runs' fine-tune (the head is irrelevant: only the
    adapted layers' W0 are read, but their names depend on the head the runs used)."""
    model, _ = load_model(name, num_labels=2, pooling=pooling)
    return model


def read_run_specs(paths) -> list[dict | None]:
    """The RunSpec saved in each folder's config.json (settings added since filled in), None where there is none."""
    specs: list[dict | None] = []
    for p in paths:
        try:
            specs.append(with_added_settings(json.loads((Path(p) / "config.json").read_text())["spec"]))
        except (OSError, ValueError, KeyError, TypeError):
            specs.append(None)
    return specs


def runs_pooling(specs) -> str:
    """The task head (``pooling``) the runs share ("model" when none records one); mixed heads are an error."""
    found = {spec["pooling"] for spec in specs if spec is not None}
    if len(found) > 1:
        raise ValueError("the runs used different task heads (pooling " + " and ".join(sorted(found)) +
                         "); compare runs of one head at a time")
    return found.pop() if found else "model"


def run_identities(specs) -> tuple[list[str], list[tuple]] | None:
    """(task, init) of each run, or None if one folder is not a training run. Two runs share an init when
    model, head, method, rank and seed are equal (the factors are seeded)."""
    try:
        return ([str(s["task"]) for s in specs],
                [(s["model"], s["pooling"], s["method"], s.get("rank"), s["seed"]) for s in specs])
    except (KeyError, TypeError):
        return None


def main(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        print("asymlora similarity: give at least two RUN_DIRs to compare", file=sys.stderr)
        return 2
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else short_labels(list(args.runs))
    if len(labels) != len(args.runs) or len(set(labels)) != len(labels):
        print(f"asymlora similarity: --labels must give {len(args.runs)} distinct names, got {labels}",
              file=sys.stderr)
        return 2
    try:
        dirs = [resolve_adapter_dir(p) for p in args.runs]
        specs = read_run_specs(args.runs)
        base = _load_base(args.base_model, runs_pooling(specs)) if args.base_model else None
        result = compare_checkpoints(dirs, labels=labels, rtol=args.rtol, base_model=base)
    except (CheckpointError, ValueError, RuntimeError) as err:
        print(f"asymlora similarity: {err}", file=sys.stderr)
        return 2
    print(format_table(result, max_pairs=args.max_pairs))
    ids = run_identities(specs)
    scenarios = scenario_summary(result, *ids) if ids else {}
    if scenarios:
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        print("\nFigure 1's scenarios (from the run folders' task and seed):")
        print(format_scenarios(scenarios, mean(result.baseline_a), mean(result.baseline_b)))
    out = Path(args.out)
    png = plot_similarity(result, out / "similarity.png", title=args.title)
    record = {"command": "asymlora similarity", "args": {k: v for k, v in vars(args).items() if k != "func"},
              "adapters": [str(d) for d in dirs], **result.to_dict(), "scenarios": scenarios, "environment": _environment()}
    if scenarios:
        plot_scenarios(scenarios, result, out / "scenarios.png", title=args.title)
    atomic_write_json(out / "similarity.json", json.loads(json.dumps(record, default=str)))
    extra = f", {out / 'scenarios.png'}" if scenarios else ""
    print(f"\nwrote {png}{extra} and {out / 'similarity.json'}")
    return 0


def _environment() -> dict:
    return environment(seed=None)
