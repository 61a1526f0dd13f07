"""Check that no MMLU test question appears in the instruction data (13-word n-gram overlap).

    python scripts/instruction_overlap.py [--sharegpt] [--out overlap.json]

Loads every natural_instructions record (and, with --sharegpt, ShareGPT's first exchanges), drops
repeated prompts, and lists every record that shares a 13-gram of words with an MMLU question
(asymlora.data.instructions.mmlu_overlap). Exit status 1 when there is any.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

try:
    import asymlora  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from asymlora.atomic import atomic_write_json  # noqa: E402
from asymlora.data.instructions import dedupe_records, load_natural_instructions, load_sharegpt, mmlu_overlap  # noqa: E402
from asymlora.data.mmlu import load_mmlu  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sharegpt", action="store_true", help="check ShareGPT too")
    p.add_argument("--out", help="write the hits (JSON) here")
    args = p.parse_args(argv)
    questions = load_mmlu()
    sources = {"natural_instructions": load_natural_instructions()}
    if args.sharegpt:
        sources["sharegpt"] = load_sharegpt()
    report = {}
    for name, records in sources.items():
        kept, repeats = dedupe_records(records)
        hits = mmlu_overlap(kept, questions)
        report[name] = {"records": len(records), "after_repeats": len(kept), "hits": hits,
                        "records_hit": len({u for u, _ in hits}), "questions_hit": len({i for _, i in hits})}
        by_source = Counter(u.split(":")[0] for u, _ in hits)
        print(f"{name}: {len(records)} records ({repeats} repeats dropped); {report[name]['records_hit']} "
              f"share a 13-gram with {report[name]['questions_hit']} MMLU questions"
              + (f"; by source: {dict(by_source.most_common(5))}" if hits else ""))
    if args.out:
        atomic_write_json(Path(args.out), report)
    return 1 if any(r["hits"] for r in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
