"""Commands that run or convert patches: generate, import-peft, export-peft.

torch and transformers are imported inside the handlers that touch a model, never here: the
registry-facing commands share this parser and must start fast. Every argument that can be
checked without the model is checked before the model is loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ppatch.errors import ExitCode, UsageError
from ppatch.output_paths import parents_made_for

__all__ = ["register"]

DEFAULT_MAX_NEW_TOKENS = 64


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 2**63 - 1")
    return value


def register(subparsers: Any) -> None:
    generate = subparsers.add_parser(
        "generate",
        help="complete a prompt with a model and its patches",
        description="Print the model's completion of PROMPT, run with the model's installed "
        "patches (in the order 'ppatch list' shows), or with the patches given by --patch. "
        "Greedy unless --sample.",
    )
    generate.add_argument("--model", required=True, metavar="MODEL", help="model folder or repo id")
    which = generate.add_mutually_exclusive_group()
    which.add_argument(
        "--patch",
        action="append",
        metavar="FILE_OR_SPEC",
        help="a .ppatch file or an installed spec such as acme/toxicity@1.2; repeat to compose "
        "(applied in the order given)",
    )
    which.add_argument("--no-patches", action="store_true", help="run the bare model")
    generate.add_argument(
        "--max-new-tokens", type=_positive_int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N"
    )
    generate.add_argument("--sample", action="store_true", help="sample instead of greedy")
    generate.add_argument("--temperature", type=_positive_float, metavar="T", help="with --sample")
    generate.add_argument("--seed", type=_seed, metavar="S", help="with --sample: repeatable runs")
    generate.add_argument(
        "--device", metavar="DEVICE", help="cpu, cuda, cuda:1 (default: cuda if any)"
    )
    generate.add_argument("--dtype", metavar="DTYPE", help="float32, float16, bfloat16")
    generate.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_false",
        help="complete PROMPT as plain text even when the tokenizer has a chat template",
    )
    generate.add_argument("prompt", metavar="PROMPT")
    generate.set_defaults(handler=run_generate)

    import_peft = subparsers.add_parser(
        "import-peft",
        help="convert a PEFT prompt-tuning adapter to a .ppatch file",
        description="Convert ADAPTER_DIR (adapter_config.json and adapter_model.safetensors "
        "with the tensor prompt_embeddings) into a .ppatch for the base model MODEL, or the "
        "one the adapter names.",
    )
    import_peft.add_argument("adapter_dir", type=Path, metavar="ADAPTER_DIR")
    import_peft.add_argument("--name", required=True, metavar="NS/NAME")
    import_peft.add_argument("--version", required=True, metavar="V")
    import_peft.add_argument("--domain", required=True, metavar="D")
    import_peft.add_argument("--model", metavar="MODEL", help="base model folder or repo id")
    import_peft.add_argument("--key", type=Path, metavar="KEY", help="private key to sign with")
    import_peft.add_argument("--summary", metavar="TEXT")
    import_peft.add_argument("--license", metavar="SPDX", default=None)
    import_peft.add_argument("-o", "--output", required=True, type=Path, metavar="FILE.ppatch")
    import_peft.set_defaults(handler=run_import_peft)

    export_peft = subparsers.add_parser(
        "export-peft",
        help="write a .ppatch file as a PEFT prompt-tuning adapter",
        description="Write OUT_DIR, a new folder that PeftModel.from_pretrained loads.",
    )
    export_peft.add_argument("file", type=Path, metavar="FILE.ppatch")
    export_peft.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    export_peft.set_defaults(handler=run_export_peft)


def run_generate(args: argparse.Namespace) -> int:
    if not args.sample and (args.temperature is not None or args.seed is not None):
        raise UsageError("--temperature and --seed only apply with --sample")
    if not args.prompt.strip():
        raise UsageError("PROMPT is empty: give the text to complete")
    from ppatch.runtime.loading import load_model

    patches: list[str] | None = [] if args.no_patches else args.patch
    patched = load_model(args.model, patches, device=args.device, dtype=args.dtype)
    options: dict[str, Any] = {"do_sample": args.sample}
    if args.sample:
        import torch

        if args.seed is not None:
            torch.manual_seed(args.seed)
        if args.temperature is not None:
            options["temperature"] = args.temperature
    completion = _complete(patched, args.prompt, args.chat_template, args.max_new_tokens, options)
    sys.stdout.write(completion + "\n")
    return int(ExitCode.OK)


def _complete(
    patched: Any, prompt: str, chat_template: bool, max_new_tokens: int, options: dict[str, Any]
) -> str:
    """The new text after `prompt`, formatted by the tokenizer's chat template when it has one
    and `chat_template` is on (the patch's virtual tokens go before the whole templated text)."""
    import torch

    from ppatch.chat import has_chat_template, prompt_token_ids

    tokenizer = patched.tokenizer
    if not (chat_template and has_chat_template(tokenizer)):
        (plain,) = patched.complete(prompt, max_new_tokens=max_new_tokens, **options)
        return str(plain)
    ids = torch.tensor([prompt_token_ids(tokenizer, prompt)], device=patched.model.device)
    if tokenizer.pad_token_id is not None:
        options.setdefault("pad_token_id", tokenizer.pad_token_id)
    sequences = patched.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        **options,
    )
    return str(tokenizer.decode(sequences[0, ids.shape[1] :], skip_special_tokens=True))


def run_import_peft(args: argparse.Namespace) -> int:
    from ppatch.runtime.peft_interop import DEFAULT_LICENSE, import_peft

    # Missing folders above -o are made, and removed again if the import fails.
    with parents_made_for(args.output):
        manifest = import_peft(
            args.adapter_dir,
            args.output,
            name=args.name,
            version=args.version,
            domain=args.domain,
            model=args.model,
            key=args.key,
            summary=args.summary,
            license=args.license or DEFAULT_LICENSE,
        )
    sys.stdout.write(
        f"wrote {args.output} ({manifest.name} {manifest.version}, "
        f"{manifest.patch.num_virtual_tokens} virtual tokens, "
        f"base model {manifest.base_model.fingerprint})\n"
    )
    return int(ExitCode.OK)


def run_export_peft(args: argparse.Namespace) -> int:
    from ppatch.runtime.peft_interop import export_peft

    with parents_made_for(args.out_dir):
        target = export_peft(args.file, args.out_dir)
    sys.stdout.write(f"wrote {target} (PEFT prompt-tuning adapter)\n")
    return int(ExitCode.OK)
