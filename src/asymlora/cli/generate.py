"""``asymlora generate``: continue a prompt with a causal LM (and adapter), streaming the tokens."""

from __future__ import annotations

import argparse
import sys

import torch

from asymlora.models.causal_lm import apply_adapter, load_causal_lm
from asymlora.models.registry import ModelError
from asymlora.sources import SourceError
from asymlora.tasks.lm_format import PromptParts, render_prompt

EPILOG = """\
The prompt is the user turn of the tokenizer's chat template (with the assistant's generation prompt) when
the tokenizer has one, else the Alpaca template that instruction tuning without a chat template uses
(asymlora.tasks.lm_format); --raw feeds the text as it is. Greedy decoding unless --temperature > 0.

examples:
  asymlora generate --model smollm2 "Name three primary colours."
  asymlora generate --model smollm2 --adapter runs/b-only/adapter "Summarise: ..."
  asymlora generate --model gemma3-270m --raw "The capital of France is"
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate text from a prompt with a causal LM (and adapter)",
                              description="Generate a continuation of a prompt, streaming tokens to stdout.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompt", help="the instruction or text to continue")
    p.add_argument("--model", default="smollm2",
                   help="smollm2 (default), gemma3-270m, a Hugging Face model folder, or a hub name")
    p.add_argument("--adapter", metavar="DIR", help="an adapter folder (asymlora's or PEFT's)")
    p.add_argument("--input", default="", help="optional input (context) placed after the instruction")
    p.add_argument("--raw", action="store_true", help="no template: the prompt text as it is")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="default 128")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; > 0: sampling")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.set_defaults(func=run)


def prompt_text(tokenizer, instruction: str, input_text: str = "", raw: bool = False) -> str:
    """What the model continues: the text itself (``raw``), else the chat or Alpaca prompt."""
    if raw:
        return instruction if not input_text else f"{instruction}\n\n{input_text}"
    return render_prompt(tokenizer, PromptParts(instruction, input_text))


def run(args: argparse.Namespace) -> int:
    from transformers import TextStreamer

    if args.max_new_tokens < 1 or args.temperature < 0:
        print("asymlora generate: --max-new-tokens must be ≥ 1 and --temperature ≥ 0", file=sys.stderr)
        return 2
    try:
        model, tokenizer = load_causal_lm(args.model, dtype=getattr(torch, args.dtype), device=args.device)
        if args.adapter:
            model = apply_adapter(model, args.adapter)
    except (ModelError, SourceError) as err:
        print(f"asymlora generate: {err}", file=sys.stderr)
        return 2
    text = prompt_text(tokenizer, args.prompt, args.input, args.raw)
    # as in training (asymlora.tasks.lm_format): a templated prompt is tokenised without added special tokens
    # (chat templates write their own BOS); the raw text gets the tokenizer's usual ones
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=args.raw)
    ids = {k: v.to(args.device) for k, v in ids.items()}
    sampling = {"do_sample": True, "temperature": args.temperature, "top_p": args.top_p} if args.temperature > 0 \
        else {"do_sample": False}
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model.generate(**ids, max_new_tokens=args.max_new_tokens, streamer=streamer,
                       pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **sampling)
    return 0
