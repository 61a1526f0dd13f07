"""A grid of runs: tasks × (method, rank) × seeds, from flags or a JSON / TOML file, resumable.

A run whose ``result.json`` exists is skipped (a run folder made with other settings is an error, not a
silent skip); an interrupted run resumes from its checkpoint. Runs are ordered task → seed → method,
so that a partial grid already compares every method on the first seeds.

A grid file holds the keys ``tasks``, ``methods`` (``"b-only"`` or ``"b-only:16"``), ``ranks``
(applied to methods given without a rank), ``seeds``, ``preset`` (one of :data:`GRID_PRESETS`), and any
:class:`~asymlora.experiments.run.RunSpec` setting (``epochs``, ``sweep``, ``lrs``, ``model`` …)::

    # grid.toml
    preset = "table1"
    tasks = ["sentiment", "trec"]
    seeds = [0, 1, 2]
    sweep = true
    epochs = 5
    tune_on_first_seed = true   # sweep on seed 0 only; seeds 1, 2 reuse the lr it chose

With ``tune_on_first_seed`` a cell (task, method, rank) runs its learning-rate sweep on the first seed
only, chooses on that seed's validation split, and the other seeds train once at the chosen rate: k + n − 1
runs per cell instead of k · n for k rates and n seeds. Every test split is still touched once per run.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from asymlora.atomic import atomic_write_json
from asymlora.experiments.loader import Loader
from asymlora.experiments.methods import get_method
from asymlora.experiments.run import check_conflict, run
from asymlora.experiments.spec import RunConflict, RunSpec
from asymlora.train.rundir import RunBusy, RunDir

# The paper's GLUE table on this machine's stand-in tasks (see docs/EXPERIMENTS.md).
DEFAULT_TASKS = ("sentiment", "sentiment-score", "trec", "sms-spam", "sarcasm")
DEFAULT_SEEDS = (0, 1, 2)
GRID_PRESETS: dict[str, tuple[str, ...]] = {
    # Table 1: baselines, LoRA, B-only and A-only at r and 2r, plus PEFT's LoRA as a cross-check
    "table1": ("full-ft", "linear-probe", "lora:8", "peft-lora:8", "b-only:8", "b-only:16", "a-only:8", "a-only:16"),
    # Table 10: every frozen-factor init at r = 8 and 16, and the trained-both inits at r = 8
    "table10": ("lora:8", "b-only-svd:8", "b-only:8", "b-only-kaiming:8", "a-only-svd:8", "a-only:8",
                "a-only-kaiming:8", "b-only-svd:16", "b-only:16", "b-only-kaiming:16", "a-only-svd:16",
                "a-only:16", "a-only-kaiming:16", "lora-svd:8", "lora-orthogonal:8", "lora-b-svd:8",
                "lora-b-orthogonal:8", "lora-b-kaiming:8"),
    # Table 5: trained-both with either factor at zero, other inits
    "table5": ("lora-svd:8", "lora-orthogonal:8", "lora-b-svd:8", "lora-b-orthogonal:8"),
    # the demo's four rows
    "demo": ("lora:8", "b-only:8", "b-only:16", "a-only:8"),
}
GRID_KEYS = frozenset({"tasks", "methods", "ranks", "seeds", "preset", "tune_on_first_seed"})
GRID_FILE = "grid.json"


class GridError(ValueError):
    """A grid file or flags that do not describe a grid; says what was wrong."""


def parse_method(entry: str, ranks: Sequence[int]) -> list[tuple[str, int | None]]:
    """``"b-only:16"`` → [("b-only", 16)]; ``"b-only"`` → one pair per rank; ``"full-ft"`` → [("full-ft", None)]."""
    name, sep, rank = str(entry).replace("@", ":").partition(":")
    method = get_method(name.strip())
    if not method.uses_rank:
        if sep:
            raise GridError(f"method {method.name!r} takes no rank (got {entry!r})")
        return [(method.name, None)]
    if sep:
        try:
            return [(method.name, int(rank))]
        except ValueError:
            raise GridError(f"bad rank in {entry!r}: write e.g. 'b-only:16'") from None
    if not ranks:
        raise GridError(f"method {method.name!r} needs a rank: write '{method.name}:8' or give ranks")
    return [(method.name, int(r)) for r in ranks]


@dataclass
class Grid:
    tasks: tuple[str, ...] = DEFAULT_TASKS
    methods: tuple[tuple[str, int | None], ...] = ()
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    settings: dict[str, Any] = field(default_factory=dict)  # RunSpec fields shared by every run
    tune_on_first_seed: bool = False  # sweep lrs on the first seed only; later seeds reuse its choice

    @classmethod
    def build(cls, *, tasks: Sequence[str] | None = None, methods: Sequence[str] | None = None,
              ranks: Sequence[int] | None = None, seeds: Sequence[int] | None = None, preset: str | None = None,
              tune_on_first_seed: bool = False, **settings: Any) -> "Grid":
        known = {f.name for f in fields(RunSpec)} - {"task", "method", "rank", "seed"}
        unknown = set(settings) - known
        if unknown:
            raise GridError(f"unknown grid settings {sorted(unknown)}; grid keys are {sorted(GRID_KEYS)} and the run "
                            f"settings {sorted(known)}")
        if preset is not None and preset not in GRID_PRESETS:
            raise GridError(f"unknown preset {preset!r}; choose one of {', '.join(GRID_PRESETS)}")
        entries = list(methods or ()) or list(GRID_PRESETS[preset or "table1"])
        ranks = tuple(int(r) for r in (ranks or (8,)))
        pairs: list[tuple[str, int | None]] = []
        for e in entries:
            for pair in parse_method(e, ranks):
                if pair not in pairs:
                    pairs.append(pair)
        tasks_t = tuple(tasks or DEFAULT_TASKS)
        seeds_t = tuple(int(s) for s in (seeds if seeds is not None else DEFAULT_SEEDS))
        if not tasks_t or not seeds_t:
            raise GridError("a grid needs at least one task and one seed")
        if not isinstance(tune_on_first_seed, bool):
            raise GridError(f"tune_on_first_seed must be true or false, got {tune_on_first_seed!r}")
        grid = cls(tasks=tasks_t, methods=tuple(pairs), seeds=seeds_t, settings=dict(settings),
                   tune_on_first_seed=tune_on_first_seed)
        grid.specs()  # validate every run's settings now, not halfway through the grid
        return grid

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "Grid":
        data = read_grid_file(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.build(**data)
        except (TypeError, ValueError) as err:
            raise GridError(f"{path}: {err}") from None

    def specs(self) -> list[RunSpec]:
        out = []
        for task in self.tasks:
            for seed in self.seeds:
                for method, rank in self.methods:
                    out.append(RunSpec(task=task, method=method, rank=rank, seed=seed, **_spec_settings(self.settings)))
        return out

    def resolve(self, spec: RunSpec, out: str | Path, loader: Loader) -> RunSpec | None:
        """The spec to actually run, its task defaults filled in. With ``tune_on_first_seed``, a later seed of a
        swept cell trains only at the lr its first seed chose on validation; ``None`` while that first seed is
        not finished."""
        spec = spec.resolved(loader.task(spec))
        if not self.tune_on_first_seed or spec.seed == self.seeds[0] or len(spec.resolved_lrs()) < 2:
            return spec
        first = RunDir(Path(out) / replace(spec, seed=self.seeds[0]).relpath()).read_result()
        if first is None:
            return None
        return replace(spec, lrs=(float(first["lr"]),), sweep=False)

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "methods": [f"{m}:{r}" if r else m for m, r in self.methods],
                "seeds": list(self.seeds), "settings": self.settings, "tune_on_first_seed": self.tune_on_first_seed}


def _spec_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    s = dict(settings)
    for key in ("lrs", "targets"):
        if isinstance(s.get(key), list):
            s[key] = tuple(s[key])
    if isinstance(s.get("task_options"), Mapping):
        s["task_options"] = tuple(s["task_options"].items())
    return s


def read_grid_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GridError(f"{path}: no such grid file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise GridError(f"{path}: bad TOML: {err}") from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise GridError(f"{path}: bad JSON at line {err.lineno}: {err.msg}") from None
    else:
        raise GridError(f"{path}: a grid file is .json or .toml")
    if not isinstance(data, dict):
        raise GridError(f"{path}: the grid file must hold a table / object of settings")
    return data


@dataclass
class GridOutcome:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # being run by another process
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def status(spec: RunSpec, out: str | Path) -> str:
    """``"done"``, ``"busy"`` (another live process runs it), ``"partial"`` (started: resumes),
    ``"conflict"`` (other settings) or ``"todo"``, of a resolved ``spec``."""
    rd = RunDir(Path(out) / spec.relpath())
    if not rd.path.exists():
        return "todo"
    try:
        check_conflict(rd, spec)
    except RunConflict:
        return "conflict"
    if rd.is_done():
        return "done"
    return "busy" if rd.lock_owner() is not None else "partial"


def run_grid(grid: Grid, out: str | Path, *, keep_going: bool = False, progress: bool = True,
             echo: Callable[[str], None] = print, runner: Callable[..., dict] = run, loader: Loader | None = None,
             **run_kwargs: Any) -> GridOutcome:
    """Run every spec of ``grid`` under ``out`` that is not done yet, with one :class:`Loader` for all of them."""
    loader = loader or Loader()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / GRID_FILE, grid.to_dict())
    specs = list(enumerate(grid.specs(), start=1))
    outcome = GridOutcome()
    start = time.monotonic()

    def attempt(i: int, spec: RunSpec) -> None:
        name = f"{spec.relpath()}"
        state = status(spec, out)
        if state == "done":
            outcome.skipped.append(name)
            echo(f"[{i}/{len(specs)}] {name}: done, skipped")
            return
        if state == "conflict":
            msg = (f"{out / spec.relpath()} was made with other settings; use another --out or delete it")
            if not keep_going:
                raise RunConflict(msg)
            outcome.failed.append((name, msg))
            echo(f"[{i}/{len(specs)}] {name}: {msg}")
            return
        if state == "busy":
            outcome.busy.append(name)
            echo(f"[{i}/{len(specs)}] {name}: being run by another process, skipped")
            return
        echo(f"[{i}/{len(specs)}] {name}: {'resuming' if state == 'partial' else 'running'}")
        try:
            runner(spec, out, loader=loader, progress=progress, echo=echo, **run_kwargs)
            outcome.done.append(name)
        except KeyboardInterrupt:
            raise
        except RunBusy as err:
            outcome.busy.append(name)
            echo(f"[{i}/{len(specs)}] {name}: {err}; skipped")
        except Exception as err:  # noqa: BLE001 - reported, and re-raised unless keep_going
            if not keep_going:
                raise
            outcome.failed.append((name, f"{type(err).__name__}: {err}"))
            echo(f"[{i}/{len(specs)}] {name}: FAILED ({type(err).__name__}: {err})")
            echo(traceback.format_exc(limit=3))

    # A later seed waiting for its first seed's lr choice is retried after the rest of the grid.
    waiting = []
    for i, spec in specs:
        concrete = grid.resolve(spec, out, loader)
        if concrete is None:
            waiting.append((i, spec))
            echo(f"[{i}/{len(specs)}] {spec.relpath()}: waits for seed {grid.seeds[0]}'s learning-rate choice")
        else:
            attempt(i, concrete)
    for i, spec in waiting:
        concrete = grid.resolve(spec, out, loader)
        if concrete is None:
            outcome.busy.append(spec.relpath())
            echo(f"[{i}/{len(specs)}] {spec.relpath()}: seed {grid.seeds[0]} of this cell is not finished "
                 "(another process runs it, or it failed); run the grid again to do this run")
        else:
            attempt(i, concrete)
    outcome.seconds = round(time.monotonic() - start, 1)
    return outcome
