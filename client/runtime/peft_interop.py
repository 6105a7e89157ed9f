"""Converting between PEFT prompt-tuning adapters and `.ppatch` files, both ways.

A PEFT prompt-tuning adapter is a folder with `adapter_config.json` (`peft_type:
"PROMPT_TUNING"`) and `adapter_model.safetensors` holding one tensor, `prompt_embeddings`,
`[num_virtual_tokens, token_dim]`: the tensor name and shape of the `.ppatch` weights, so the
conversion moves the tensor and translates the metadata. Neither direction needs torch.

Nothing is half-written: `import_peft` checks everything before `write_patch` writes atomically,
and `export_peft` fills a hidden staging folder beside the target and renames it into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchfmt import (
    Manifest,
    PatchFile,
    build_manifest,
    load_private_key,
    read_patch,
    resolve_model_path,
    write_patch,
)
from patchfmt.errors import InvalidWeightsError
from patchfmt.weights import canonical_weights, inspect_weights
from ppatch.errors import ConflictError, ExitCode, NotFoundError, PpatchError, UsageError
from ppatch.fingerprints import model_fingerprint

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "InvalidAdapterError",
    "PeftAdapter",
    "adapter_config_for",
    "export_peft",
    "import_peft",
    "read_peft_adapter",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PROMPT_TUNING = "PROMPT_TUNING"
CAUSAL_LM = "CAUSAL_LM"
DEFAULT_LICENSE = "NOASSERTION"


class InvalidAdapterError(PpatchError, ValueError):
    """The folder is not a PEFT prompt-tuning adapter for a causal LM that ppatch can convert."""

    exit_code = ExitCode.VERIFICATION

    def __init__(self, directory: Path, problem: str) -> None:
        self.directory = directory
        self.problem = problem
        super().__init__(f"{str(directory)!r} is not a usable PEFT adapter: {problem}")


@dataclass(frozen=True)
class PeftAdapter:
    """A validated prompt-tuning adapter; `weights` are already the canonical `.ppatch` bytes."""

    directory: Path
    config: Mapping[str, Any]
    weights: bytes
    num_virtual_tokens: int
    hidden_size: int

    @property
    def base_model(self) -> str | None:
        value = self.config.get("base_model_name_or_path")
        return value if isinstance(value, str) and value else None

    @property
    def revision(self) -> str | None:
        value = self.config.get("revision")
        return value if isinstance(value, str) and value else None


def read_peft_adapter(directory: str | os.PathLike[str]) -> PeftAdapter:
    """Read and check a PEFT prompt-tuning adapter folder."""
    folder = Path(directory)
    if not folder.is_dir():
        raise NotFoundError(f"adapter folder {str(folder)!r} does not exist")
    config_path = folder / ADAPTER_CONFIG
    if not config_path.is_file():
        raise InvalidAdapterError(folder, f"it has no {ADAPTER_CONFIG}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidAdapterError(folder, f"{ADAPTER_CONFIG} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise InvalidAdapterError(folder, f"{ADAPTER_CONFIG} must hold a JSON object")
    peft_type = config.get("peft_type")
    if peft_type != PROMPT_TUNING:
        raise InvalidAdapterError(
            folder, f"peft_type is {peft_type!r}; only {PROMPT_TUNING!r} adapters convert to ppatch"
        )
    task_type = config.get("task_type")
    if task_type not in (CAUSAL_LM, None):
        raise InvalidAdapterError(
            folder, f"task_type is {task_type!r}; ppatch patches causal LMs ({CAUSAL_LM!r})"
        )
    submodules = config.get("num_transformer_submodules")
    if submodules not in (1, None):
        raise InvalidAdapterError(
            folder, f"num_transformer_submodules is {submodules!r}; a causal LM has 1"
        )
    weights_path = folder / ADAPTER_WEIGHTS
    if not weights_path.is_file():
        legacy = " (adapter_model.bin is a pickle: re-save it with safetensors)"
        hint = legacy if (folder / "adapter_model.bin").exists() else ""
        raise InvalidAdapterError(folder, f"it has no {ADAPTER_WEIGHTS}{hint}")
    raw = weights_path.read_bytes()
    try:
        info = inspect_weights(raw, source=ADAPTER_WEIGHTS)
        weights = canonical_weights(raw, source=ADAPTER_WEIGHTS)
    except InvalidWeightsError as error:
        raise InvalidAdapterError(folder, str(error)) from None
    expected = (config.get("num_virtual_tokens"), config.get("token_dim"))
    if expected != info.shape and expected != (info.shape[0], None):
        raise InvalidAdapterError(
            folder,
            f"prompt_embeddings has shape {list(info.shape)!r} but {ADAPTER_CONFIG} says "
            f"[num_virtual_tokens, token_dim] = {list(expected)!r}",
        )
    return PeftAdapter(
        directory=folder,
        config=config,
        weights=weights,
        num_virtual_tokens=info.shape[0],
        hidden_size=info.shape[1],
    )


def import_peft(
    adapter_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    domain: str,
    model: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    summary: str | None = None,
    license: str = DEFAULT_LICENSE,
) -> Manifest:
    """Write `output` (a `.ppatch`) from a PEFT adapter; returns its manifest.

    The base model is `model`, else the adapter's `base_model_name_or_path`, found locally and
    fingerprinted. `key` (a PEM private key file) signs the file.
    """
    target = Path(output)
    if target.exists():
        raise ConflictError(f"{str(target)!r} already exists; remove it or choose another -o")
    adapter = read_peft_adapter(adapter_dir)
    private_key = _read_private_key(Path(key)) if key is not None else None
    model_reference = str(model) if model is not None else adapter.base_model
    if model_reference is None:
        raise UsageError(
            f"the adapter in {str(adapter.directory)!r} does not name its base model "
            "(base_model_name_or_path is empty): pass --model MODEL"
        )
    model_path = resolve_model_path(model_reference)
    _check_hidden_size(model_path, adapter)
    fingerprint = model_fingerprint(model_path)
    base_model: dict[str, Any] = {
        "id": adapter.base_model or model_reference,
        "fingerprint": fingerprint,
    }
    if adapter.revision is not None:
        base_model["revision"] = adapter.revision
    fields = {
        "name": name,
        "version": version,
        "domain": domain,
        "summary": summary
        or f"Imported from the PEFT prompt-tuning adapter {adapter.directory.name!r}",
        "license": license,
        "base_model": base_model,
        "training": {
            "method": "peft-prompt-tuning",
            "imported_from": "peft",
            "peft_version": adapter.config.get("peft_version"),
            "init": adapter.config.get("prompt_tuning_init"),
            "init_text": adapter.config.get("prompt_tuning_init_text"),
        },
        "evaluation": {},
    }
    manifest = build_manifest(fields, adapter.weights)
    write_patch(target, manifest, adapter.weights, private_key=private_key)
    return manifest


def adapter_config_for(manifest: Manifest) -> dict[str, Any]:
    """The `adapter_config.json` PEFT writes for prompt tuning, for this patch.

    `num_layers` and `num_attention_heads` stay null: PEFT fills them from the base model's
    config when it loads the adapter.
    """
    return {
        "auto_mapping": None,
        "base_model_name_or_path": manifest.base_model.id,
        "inference_mode": True,
        "modules_to_save": None,
        "num_attention_heads": None,
        "num_layers": None,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": manifest.patch.num_virtual_tokens,
        "peft_type": PROMPT_TUNING,
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "revision": manifest.base_model.revision,
        "task_type": CAUSAL_LM,
        "token_dim": manifest.patch.hidden_size,
        "tokenizer_kwargs": None,
        "tokenizer_name_or_path": None,
    }


def export_peft(patch: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Write a PEFT prompt-tuning adapter folder `out_dir` from a `.ppatch` file."""
    target = Path(out_dir)
    if target.exists():
        raise ConflictError(f"{str(target)!r} already exists; remove it or choose another folder")
    source = Path(patch)
    if not source.is_file():
        raise NotFoundError(f"patch file {str(source)!r} does not exist")
    patch_file = read_patch(source)
    parent = target.parent
    if not parent.is_dir():
        raise NotFoundError(f"folder {str(parent)!r} does not exist; create it first")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would make the adapter private to this user
        _write_adapter(staging, patch_file)
        try:
            staging.rename(target)
        except OSError:
            raise ConflictError(
                f"{str(target)!r} appeared while the adapter was being written; nothing replaced"
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_adapter(folder: Path, patch: PatchFile) -> None:
    manifest = patch.manifest
    config = json.dumps(adapter_config_for(manifest), indent=2, sort_keys=True) + "\n"
    (folder / ADAPTER_CONFIG).write_text(config, encoding="utf-8")
    # The `.ppatch` weights already are a safetensors file with the one tensor PEFT expects.
    (folder / ADAPTER_WEIGHTS).write_bytes(patch.weights)
    (folder / "README.md").write_text(
        f"# {manifest.name} {manifest.version}\n\n"
        f"A PEFT prompt-tuning adapter exported by ppatch from `{manifest.name}` "
        f"{manifest.version} ({manifest.domain}).\n\n"
        f"- base model: `{manifest.base_model.id}`, "
        f"fingerprint `{manifest.base_model.fingerprint}`\n"
        f"- virtual tokens: {manifest.patch.num_virtual_tokens}, "
        f"hidden size: {manifest.patch.hidden_size}\n\n"
        "Load it with `PeftModel.from_pretrained(base_model, this_folder)`.\n",
        encoding="utf-8",
    )


def _read_private_key(path: Path) -> Any:
    if not path.is_file():
        raise NotFoundError(f"key file {str(path)!r} does not exist")
    return load_private_key(path.read_bytes())


def _check_hidden_size(model_path: Path, adapter: PeftAdapter) -> None:
    """Refuse an adapter whose width is not the model's (read from config.json, no torch)."""
    config_file = model_path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # The fingerprint check still ties the patch to this model.
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    hidden = config.get("hidden_size", text_config.get("hidden_size"))
    if isinstance(hidden, int) and hidden != adapter.hidden_size:
        raise InvalidAdapterError(
            adapter.directory,
            f"its prompt embeddings are {adapter.hidden_size} wide but the model "
            f"{str(model_path)!r} has hidden_size {hidden}",
        )
