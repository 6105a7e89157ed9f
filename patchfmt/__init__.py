"""The `.ppatch` format `ppatch/1`: manifest, container, weights, signing, fingerprint, versions.

The names below load on first use (PEP 562): the CLI's registry commands, run from cron, need
only a few of them, and importing numpy, pydantic and cryptography up front would triple their
start-up time (benchmarks/client.py). Type checkers see ordinary imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patchfmt.container import PatchFile, ReadLimits, pack_patch, read_patch, write_patch
    from patchfmt.errors import (
        FingerprintMismatchError,
        HashMismatchError,
        InvalidContainerError,
        InvalidManifestError,
        InvalidNameError,
        InvalidRangeError,
        InvalidVersionError,
        InvalidWeightsError,
        ModelNotFoundError,
        PatchFormatError,
        SignatureError,
        UnsupportedFormatError,
    )
    from patchfmt.fingerprint import (
        check_fingerprint,
        fingerprint_model,
        is_gguf_file,
        model_config_file,
        model_weight_files,
        resolve_model_path,
    )
    from patchfmt.manifest import (
        BaseModelRef,
        FileDigest,
        Manifest,
        PatchSpec,
        build_manifest,
        is_fingerprint,
    )
    from patchfmt.names import PackageSpec
    from patchfmt.signing import (
        Signature,
        generate_private_key,
        key_id,
        load_private_key,
        load_public_key,
        private_key_to_pem,
        public_key_to_pem,
        sign_manifest,
        verify_patch,
        verify_signature,
    )
    from patchfmt.versions import Version, VersionRange, parse_version, select_version
    from patchfmt.weights import (
        TENSOR_NAME,
        WeightsInfo,
        array_from_weights,
        canonical_weights,
        inspect_weights,
        weights_from_array,
    )

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "BaseModelRef": "patchfmt.manifest",
    "FileDigest": "patchfmt.manifest",
    "FingerprintMismatchError": "patchfmt.errors",
    "HashMismatchError": "patchfmt.errors",
    "InvalidContainerError": "patchfmt.errors",
    "InvalidManifestError": "patchfmt.errors",
    "InvalidNameError": "patchfmt.errors",
    "InvalidRangeError": "patchfmt.errors",
    "InvalidVersionError": "patchfmt.errors",
    "InvalidWeightsError": "patchfmt.errors",
    "Manifest": "patchfmt.manifest",
    "ModelNotFoundError": "patchfmt.errors",
    "PackageSpec": "patchfmt.names",
    "PatchFile": "patchfmt.container",
    "PatchFormatError": "patchfmt.errors",
    "PatchSpec": "patchfmt.manifest",
    "ReadLimits": "patchfmt.container",
    "Signature": "patchfmt.signing",
    "SignatureError": "patchfmt.errors",
    "TENSOR_NAME": "patchfmt.weights",
    "UnsupportedFormatError": "patchfmt.errors",
    "Version": "patchfmt.versions",
    "VersionRange": "patchfmt.versions",
    "WeightsInfo": "patchfmt.weights",
    "array_from_weights": "patchfmt.weights",
    "build_manifest": "patchfmt.manifest",
    "canonical_weights": "patchfmt.weights",
    "check_fingerprint": "patchfmt.fingerprint",
    "fingerprint_model": "patchfmt.fingerprint",
    "model_config_file": "patchfmt.fingerprint",
    "generate_private_key": "patchfmt.signing",
    "inspect_weights": "patchfmt.weights",
    "is_fingerprint": "patchfmt.manifest",
    "is_gguf_file": "patchfmt.fingerprint",
    "key_id": "patchfmt.signing",
    "load_private_key": "patchfmt.signing",
    "load_public_key": "patchfmt.signing",
    "model_weight_files": "patchfmt.fingerprint",
    "pack_patch": "patchfmt.container",
    "parse_version": "patchfmt.versions",
    "private_key_to_pem": "patchfmt.signing",
    "public_key_to_pem": "patchfmt.signing",
    "read_patch": "patchfmt.container",
    "resolve_model_path": "patchfmt.fingerprint",
    "select_version": "patchfmt.versions",
    "sign_manifest": "patchfmt.signing",
    "verify_patch": "patchfmt.signing",
    "verify_signature": "patchfmt.signing",
    "weights_from_array": "patchfmt.weights",
    "write_patch": "patchfmt.container",
}

__all__ = [
    "TENSOR_NAME",
    "BaseModelRef",
    "FileDigest",
    "FingerprintMismatchError",
    "HashMismatchError",
    "InvalidContainerError",
    "InvalidManifestError",
    "InvalidNameError",
    "InvalidRangeError",
    "InvalidVersionError",
    "InvalidWeightsError",
    "Manifest",
    "ModelNotFoundError",
    "PackageSpec",
    "PatchFile",
    "PatchFormatError",
    "PatchSpec",
    "ReadLimits",
    "Signature",
    "SignatureError",
    "UnsupportedFormatError",
    "Version",
    "VersionRange",
    "WeightsInfo",
    "array_from_weights",
    "build_manifest",
    "canonical_weights",
    "check_fingerprint",
    "fingerprint_model",
    "generate_private_key",
    "inspect_weights",
    "is_fingerprint",
    "is_gguf_file",
    "key_id",
    "load_private_key",
    "load_public_key",
    "model_config_file",
    "model_weight_files",
    "pack_patch",
    "parse_version",
    "private_key_to_pem",
    "public_key_to_pem",
    "read_patch",
    "resolve_model_path",
    "select_version",
    "sign_manifest",
    "verify_patch",
    "verify_signature",
    "weights_from_array",
    "write_patch",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'patchfmt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
