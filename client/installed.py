"""Which installed patch a name or a spec means: the one lookup every command and API uses.

`ppatch.load_model`/`ppatch.apply`, `ppatch eval`, and install/upgrade/remove all call these
functions, so two commands cannot pick different patches for the same spec. The rules:

- `namespace/name` names one package; a bare `name` names the package of that name in any
  namespace, and is refused as ambiguous when two namespaces have it installed on the model,
  whatever the range says (the name, not the version, is what is unclear).
- A range is matched with pre-releases included: an installed pre-release was chosen on purpose
  (`install --pre`). Leaving pre-releases out is a rule for choosing among a registry's
  candidates (`ppatch.resolver`), not for naming what is already installed; pip judges an
  installed distribution against a requirement the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ppatch import store
from ppatch.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from patchfmt import PackageSpec

__all__ = ["find_installed", "installed_file", "installed_for_spec", "satisfies"]


def find_installed(state: store.InstalledSet, name: str) -> store.InstalledPatch | None:
    """The installed package `namespace/name`, or the one bare `name` means, else None."""
    if "/" in name:
        return state.find(name)
    matches = [patch for patch in state.patches if patch.name.partition("/")[2] == name]
    if len(matches) > 1:
        names = ", ".join(f"{patch.name} {patch.version}" for patch in matches)
        raise UsageError(f"{name!r} matches several installed patches ({names}): add the namespace")
    return matches[0] if matches else None


def satisfies(patch: store.InstalledPatch, spec: PackageSpec) -> bool:
    """True when the installed version is in the spec's range (pre-releases included)."""
    from patchfmt import parse_version

    return bool(spec.range.contains(parse_version(patch.version), include_prerelease=True))


def installed_for_spec(
    state: store.InstalledSet, spec: PackageSpec, *, text: str | None = None
) -> store.InstalledPatch:
    """The installed patch `spec` names whose version is in its range; NotFoundError if none."""
    shown = text if text is not None else str(spec)
    found = find_installed(state, spec.full_name or spec.name)
    if found is None or not satisfies(found, spec):
        listing = ", ".join(f"{patch.name} {patch.version}" for patch in state.patches) or "none"
        raise NotFoundError(
            f"no installed patch matches {shown!r} for model {state.fingerprint} "
            f"(installed: {listing}); install it with 'ppatch install' or give a .ppatch path"
        )
    return found


def installed_file(fingerprint: str, text: str) -> Path:
    """The stored `.ppatch` file of the patch that the spec `text` names on this model."""
    from patchfmt import PackageSpec

    try:
        spec = PackageSpec.parse(text)
    except ValueError as error:
        # Not found rather than a usage error: the text may be a file path that does not exist.
        raise NotFoundError(
            f"patch {text!r} is neither a file nor a package spec ([namespace/]name[@range]): "
            f"{error}"
        ) from error
    state = store.read_installed(fingerprint)
    return store.installed_blob(installed_for_spec(state, spec, text=text))
