"""The benchmark's structural facts (what each adapter keeps for backward) and the `asymlora bench` format.

No wall-clock limits are asserted: timings belong to the benchmark's tables, not to tests.
"""

import json

import pytest
import torch

from asymlora.bench.measure import SavedTensorTracer, peak_memory
from asymlora.bench.methods import BENCH_CONFIGS, adapter_modules, prepare
from asymlora.bench.models import get_bench_model, make_batch
from asymlora.bench.report import Row

TOKENS = 2 * 16


@pytest.fixture(scope="module")
def tiny():
    spec = get_bench_model("tiny")
    base = spec.loader()
    for p in base.parameters():
        p.requires_grad_(False)
    return spec, base, make_batch(spec, base, 2, 16, "cpu")


def _trace(spec, base, batch, method, dropout=0.1):
    p = prepare(method, base, spec, rank=4, dropout=dropout)
    layers = adapter_modules(p.model)
    with SavedTensorTracer(p.model, layers) as tracer:
        p.model(**batch)
    return p, tracer


def test_b_only_branch_keeps_only_r_per_token_never_the_layer_input(tiny):
    spec, base, batch = tiny
    _, tracer = _trace(spec, base, batch, "asym-b-only")
    assert len(tracer.per_layer) == 14  # 7 linear layers × 2 blocks, all adapted
    for name, ls in tracer.per_layer.items():
        shapes = [v[1] for v in ls.branch.values()]
        assert shapes == [(2, 16, 4)], (name, shapes)  # h = A·x: r = 4 numbers per token
        assert ls.branch_bytes == TOKENS * 4 * 4
        assert not ls.keeps_d_in_sized(TOKENS)
        assert ls.base_bytes == 0  # the frozen base weight saves nothing for a weight gradient


@pytest.mark.parametrize("method", ["peft-lora", "asym-lora"])
def test_lora_branches_keep_the_d_in_wide_input(tiny, method):
    spec, base, batch = tiny
    _, tracer = _trace(spec, base, batch, method)
    down = next(ls for n, ls in tracer.per_layer.items() if n.endswith("down_proj"))
    assert down.d_in == 256 and down.keeps_d_in_sized(TOKENS)
    b_only = next(ls for n, ls in _trace(spec, base, batch, "asym-b-only")[1].per_layer.items()
                  if n.endswith("down_proj"))
    # the B-only branch keeps at most r/d_in of what a LoRA branch keeps
    assert b_only.branch_bytes <= 4 / 256 * down.branch_bytes


def test_lorafa_keeps_its_dropout_mask_and_b_only_does_not(tiny):
    spec, base, batch = tiny
    _, fa = _trace(spec, base, batch, "peft-lorafa", dropout=0.1)
    _, bonly = _trace(spec, base, batch, "asym-b-only", dropout=0.1)
    # (in block 0, q/k/v see the embeddings, which need no gradient: there dropout keeps nothing)
    assert all(ls.keeps_d_in_sized(TOKENS) for n, ls in fa.per_layer.items() if ".layers.1." in n)
    assert not any(ls.keeps_d_in_sized(TOKENS) for ls in bonly.per_layer.values())
    _, fa0 = _trace(spec, base, batch, "peft-lorafa", dropout=0.0)
    assert not any(ls.keeps_d_in_sized(TOKENS) for ls in fa0.per_layer.values())


def test_frozen_factor_and_base_get_no_gradient_work_and_the_floor_reaches_every_target(tiny):
    spec, base, batch = tiny
    p = prepare("asym-b-only", base, spec, rank=4, dropout=0.1)
    p.model(**batch).loss.backward()
    from asymlora import adapted_layers

    for _, layer in adapted_layers(p.model):
        assert layer.lora_A.grad is None and layer.base_layer.weight.grad is None
        assert layer.lora_B.grad is not None
    floor = prepare("floor", base, spec, rank=4, dropout=0.1)
    seen = []
    modules = dict(floor.model.named_modules())

    def watch(_module, _inputs, output):
        output.register_hook(lambda g: seen.append(1))

    handles = [modules[n].register_forward_hook(watch)
               for n in [n for n, m in modules.items() if n.endswith(("q_proj", "down_proj"))]]
    out = floor.model(**batch)
    assert out.loss.requires_grad and floor.optimizer is None and floor.trainable == 0
    out.loss.backward()
    assert len(seen) == 4  # the gradient reached every target output
    for h in handles + floor.hooks:
        h.remove()


def test_peak_memory_counts_a_step_allocation():
    def fn():
        x = torch.empty(1 << 20, dtype=torch.float32)  # 4 MiB
        x.fill_(1.0)
        del x

    assert peak_memory(fn, "cpu") >= 4 << 20


def test_row_ratios_and_targets():
    r = Row("s", "m", "a", "b", 2.0, 4.0, "s", bound=1.0, target="≤ 1")
    assert r.ratio == 0.5 and r.held is True
    assert Row("s", "m", "a", "b", 5.0, 4.0, "s", bound=1.0).held is False
    assert Row("s", "m", "a", "b", 5.0, 4.0, "s").held is None
    assert Row("s", "m", "a", "b", 1.01, 1.0, "s", bound=1.02, lower=0.98).held is True
    assert Row("s", "m", "a", "b", 1e-8, 0.5, "rel", bound=1e-6, check="value").held is True


def test_every_method_builds_and_trains_one_step(tiny):
    spec, base, batch = tiny
    for method in BENCH_CONFIGS:
        p = prepare(method, base, spec, rank=4, dropout=0.0)
        loss = p.model(**batch).loss
        loss.backward()
        if p.optimizer is not None:
            p.optimizer.step()
        assert (p.trainable > 0) == (method != "floor")
        for h in p.hooks:
            h.remove()


def test_cli_help_lists_the_options(capsys):
    from asymlora.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for option in ("--device", "--dtype", "--quick", "--model", "--json", "--sections", "tiny", "minilm", "smollm2"):
        assert option in text


def test_cli_prints_one_ratio_table_and_writes_the_record(tmp_path, capsys):
    from asymlora.cli import main

    threads = torch.get_num_threads()
    path = tmp_path / "bench.json"
    try:
        code = main(["bench", "--model", "tiny", "--quick", "--quiet", "--threads", "1", "--warmup", "0",
                     "--repeats", "1", "--serve-counts", "2", "--json", str(path)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("asymlora bench: model tiny")
    assert lines[1].startswith("Machine: ")
    header = "| # | section | metric | subject | reference | subject value | reference value | ratio | target | held |"
    assert header in lines
    table = [ln for ln in lines[lines.index(header) + 2:] if ln.startswith("| ")]
    sections = {ln.split(" | ")[1] for ln in table[:60] if ln.split(" | ")[0].strip("| ").isdigit()}
    assert sections == {"saved", "step", "file", "merged", "combine", "multi", "serve"}
    assert any(ln.startswith("Targets: ") and " held" in ln for ln in lines)
    record = json.loads(path.read_text())
    assert {"machine", "versions", "commit", "date", "settings", "rows", "details"} <= set(record)
    assert record["machine"]["device"] == "cpu" and record["versions"]["peft"]
    assert record["settings"]["model"] == "tiny" and record["settings"]["dtype"] == "float32"
    row = record["rows"][0]
    assert {"section", "metric", "subject", "reference", "value", "ref_value", "ratio", "target", "held"} <= set(row)
    assert len(record["rows"]) == sum(1 for ln in table if ln.split(" | ")[0].strip("| ").isdigit())
    # the structural rows hold whatever the machine's load: bytes kept and exactness
    saved = [r for r in record["rows"] if r["metric"].startswith("bytes kept for backward by one adapter branch")
             and r["reference"] == "PEFT LoRA"]
    assert saved and all(r["held"] for r in saved)
    assert all(r["held"] for r in record["rows"] if r["section"] == "combine" and r["held"] is not None)


def test_bench_refuses_cuda_without_a_gpu():
    from asymlora.bench.suite import build_settings

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA device"):
        build_settings("tiny", device="cuda")


def test_smollm2_cache_is_checked_before_use(tmp_path):
    from asymlora.models import gguf, smollm2
    from asymlora.sources.fetch import sha256_file

    folder = tmp_path / "dequantised"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    pin = smollm2.SMOLLM2_PIN.sha256
    assert not gguf.cache_is_valid(folder, pin)  # no record of where it came from
    record = {"format": gguf.CACHE_FORMAT, "gguf_sha256": pin, "model_sha256": sha256_file(folder / "model.safetensors")}
    (folder / "source.json").write_text(json.dumps(record))
    assert gguf.cache_is_valid(folder, pin)
    (folder / "model.safetensors").write_bytes(b"damaged")
    assert not gguf.cache_is_valid(folder, pin)
    record["model_sha256"] = sha256_file(folder / "model.safetensors")
    record["gguf_sha256"] = "0" * 64  # made from another GGUF file
    (folder / "source.json").write_text(json.dumps(record))
    assert not gguf.cache_is_valid(folder, pin)


@pytest.mark.slow
def test_smollm2_loads_with_the_shapes_the_benchmark_relies_on():
    from asymlora.models.causal_lm import load_causal_lm

    model, tokenizer = load_causal_lm("smollm2")
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (30, 576, 1536)
    down = model.model.layers[0].mlp.down_proj
    assert (down.in_features, down.out_features) == (1536, 576)  # the 4×-wide input of the issue
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0])


def test_job_section_times_the_jobs_real_batches_at_its_rank_and_targets(tiny):
    """``--sections job``: the instruction-tuning job's batches (labels −100 on the prompt, padding not
    counted), r = 32 on q/v, and trainable counts that follow from the shapes: B-only r·d_out per target,
    LoRA r·(d_in + d_out), the floor none."""
    from asymlora.bench.job import JOB_RANK, TOKENS_PER_S_TARGET, job_batches
    from asymlora.bench.sections import DEFAULT_SECTIONS
    from asymlora.bench.suite import build_settings, run_suite

    assert "job" not in DEFAULT_SECTIONS  # it reads SmolLM2's tokenizer and BIG-bench: asked for by name
    spec, base, _ = tiny
    vocab = base.config.vocab_size
    batches = job_batches(1, vocab=vocab)
    again = job_batches(1, vocab=vocab)
    assert torch.equal(batches[0]["input_ids"], again[0]["input_ids"])  # the job's fixed epoch-0 order
    b = batches[0]
    assert b["input_ids"].shape[0] == 8 and b["input_ids"].shape[1] <= 256
    assert int(b["input_ids"].max()) < vocab
    prompt = (b["labels"] == -100) & (b["attention_mask"] == 1)
    assert prompt.any() and (b["labels"] != -100).any()  # loss on the responses only
    settings = build_settings("tiny", warmup=0, repeats=1, job_batches=1)
    record = run_suite(settings, ["job"])
    rows = [r for r in record["rows"] if r.section == "job"]
    assert len(rows) == 5
    assert "B-only" in rows[0].subject and rows[0].reference == "PEFT LoRA"
    assert rows[0].target.startswith(f"≥ {TOKENS_PER_S_TARGET:.2f}")
    assert all(r.value > 0 and r.ref_value > 0 and r.unit == "tok/s" for r in rows)
    details = record["details"]["job"]
    assert details["tokens"] == int(b["attention_mask"].sum()) <= details["padded_tokens"] == b["attention_mask"].numel()
    assert details["ids_modulo_vocab"] and details["rank"] == JOB_RANK == 32 and details["mac_bound"] > 1
    targets = [m for name, m in base.named_modules()
               if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in ("q_proj", "v_proj")]
    assert targets
    trainable = details["trainable"]
    assert trainable["floor"] == 0
    assert trainable["asym-b-only"] == sum(JOB_RANK * m.out_features for m in targets)
    assert trainable["asym-lora"] == trainable["peft-lora"] == sum(JOB_RANK * (m.in_features + m.out_features)
                                                                    for m in targets)
    for m, t in details["tokens_per_s"].items():
        assert t == pytest.approx(details["tokens"] / details["median_s"][m])


def test_job_section_refuses_a_model_that_is_not_a_causal_lm():
    from asymlora.bench.suite import build_settings, run_suite

    with pytest.raises(ValueError, match="causal LM"):
        run_suite(build_settings("minilm", warmup=0, repeats=1, job_batches=1), ["job"])


def test_step_mac_bound_counts_the_linears_and_the_adapters():
    """(2D + 3a) / 2D by hand for a two-layer model: D = 8·4 + 4·2 = 40, a = r·(8 + 4) on the one target."""
    from asymlora.bench.job import step_mac_bound

    model = torch.nn.Sequential()
    model.add_module("q_proj", torch.nn.Linear(8, 4))
    model.add_module("head", torch.nn.Linear(4, 2))
    assert step_mac_bound(model, rank=2, targets=("q_proj",)) == pytest.approx(1 + 1.5 * 24 / 40)
    assert step_mac_bound(model, rank=2, targets=("v_proj",)) == 1.0
