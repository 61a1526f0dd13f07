"""The fuzz sample CI runs (issue 15): a fixed few hundred mutated adapter and PEFT folders, each
loaded in a worker process under a time and memory limit. No case may be a silent wrong load, a raw
error, a hang, a crash or leave the model changed. ``python -m fuzz --cases 5000`` runs thousands
(docs/RELIABILITY.md)."""

import torch
from fuzz.cases import ORIGINS, make_case, make_origin
from fuzz.runner import DEFECTS, classify, run
from fuzz.worker import handle

SAMPLE = 300


def test_the_fuzz_sample_has_no_defect(tmp_path):
    report = run(SAMPLE, seed=0, timeout=20.0, memory_mb=3000, work=tmp_path)
    found = [f"{kind}: case {case.index} ({case.origin} onto {case.base}): {case.mutation} -> {reply}"
             for kind, case, reply in report.defects]
    assert not found, "\n".join(found)
    assert report.total == SAMPLE and not any(report.counts[d] for d in DEFECTS)
    # the sample exercises every outcome a clean loader has
    assert report.counts["clean-error"] > SAMPLE // 2
    assert report.counts["identical"] > 20 and report.counts["accepted-edit"] > 0


def test_the_same_seed_gives_the_same_cases(tmp_path):
    a = [make_case(i, 5, tmp_path / "o", tmp_path / "a").mutation for i in range(30)]
    b = [make_case(i, 5, tmp_path / "o", tmp_path / "b").mutation for i in range(30)]
    assert a == b and len(set(a)) > 20


def test_the_classifier_sees_a_silent_wrong_load(tmp_path):
    """The harness is able to fail: an origin folder loaded against another origin's reference
    output is a load with different outputs."""
    roots = {o.name: make_origin(o, tmp_path) for o in ORIGINS if o.name in ("b-only", "a-only")}
    reply = handle({"folder": str(roots["a-only"] / "folder"), "origin_folder": "", "peft": False,
                    "expected": str(roots["b-only"] / "expected.safetensors"), "base": "net", "origin_base": "net"})
    case = make_case(0, 0, tmp_path, tmp_path / "c")
    assert reply["outcome"] == "loaded" and not reply["identical"]
    assert classify(case, reply) == ("silent-wrong" if case.detectable else "accepted-edit")
    torch.set_num_threads(1)
