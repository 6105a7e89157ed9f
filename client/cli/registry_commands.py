"""Registry-facing commands: search, info, install, remove, list, freeze, outdated, upgrade,
publish, yank, unyank, login, trust.

These never import torch or transformers (tests/client/cli/test_startup.py): a deployment's
cron job runs `ppatch outdated` and must start fast. Handlers return an exit code and raise
typed errors for everything else; `ppatch.cli.main` prints those as one line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchfmt.atomic import atomic_write_text
from ppatch import config, install, install_plan, installed, lockfile, store, verbosity
from ppatch.errors import (
    ExitCode,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
    VerificationError,
)
from ppatch.install_plan import InstallAction, YankLookup, YankState
from ppatch.terminal_text import printable

if TYPE_CHECKING:
    from ppatch.registry.client import RegistryClient

__all__ = ["register"]


# -- shared helpers ------------------------------------------------------------------------


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


@contextmanager
def _client(registry: str | None, *, with_token: bool = False) -> Iterator[RegistryClient]:
    from ppatch.registry.client import RegistryClient

    url = config.resolve_registry(registry)
    token = config.load_token(url) if with_token else None
    if with_token and token is None:
        raise PermissionDeniedError(
            f"no token for {url}: run 'ppatch login --registry {url}' or set PPATCH_TOKEN"
        )
    verbosity.detail(f"registry {url}" + (" (with a token)" if token else ""))
    with RegistryClient(url, token=token) as client:
        yield client


def _split_exact(text: str) -> tuple[str, str, str]:
    """`NS/NAME@VERSION` with an exact version, as yank and unyank take."""
    from patchfmt import parse_version

    name_part, at, version = text.partition("@")
    namespace, slash, name = name_part.partition("/")
    if not (at and slash and namespace and name and version):
        raise UsageError(
            f"{text!r} is not valid: expected NAMESPACE/NAME@VERSION, e.g. acme/toxicity@1.2.1"
        )
    try:
        parse_version(version)
    except ValueError as error:
        raise UsageError(str(error)) from error
    return namespace, name, version


def _split_name(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not (slash and namespace and name) or "@" in text:
        raise UsageError(f"{text!r} is not valid: expected NAMESPACE/NAME, e.g. acme/toxicity")
    return namespace, name


# -- search and info -----------------------------------------------------------------------


def _full_name(document: dict[str, Any]) -> dict[str, Any]:
    """The registry's `namespace` + `name` as the CLI's one spelling of a package name,
    `name: "ns/name"` (docs/cli.md, "JSON vocabulary"); `namespace` stays for filtering."""
    namespace, name = document.get("namespace"), document.get("name")
    if namespace and name and "/" not in str(name):
        return {**document, "name": f"{namespace}/{name}"}
    return document


def _search(args: argparse.Namespace) -> int:
    fingerprint = install.model_target(args.model).fingerprint if args.model else None
    with _client(args.registry) as client:
        results = client.search(args.query, domain=args.domain, fingerprint=fingerprint)
    if args.json:
        _print_json({"packages": [_full_name(item) for item in results]})
        return int(ExitCode.OK)
    if not results:
        verbosity.note("no packages found")
    for item in results:
        latest = item.get("latest_version") or "-"
        print(
            printable(
                f"{item.get('namespace')}/{item.get('name')}  {latest}  [{item.get('domain')}]  "
                f"{item.get('summary') or ''}".rstrip()
            )
        )
    return int(ExitCode.OK)


def _info(args: argparse.Namespace) -> int:
    namespace, name = _split_name(args.package)
    with _client(args.registry) as client:
        index = client.get_index(namespace, name)
    if args.json:
        _print_json(_full_name(index))
        return int(ExitCode.OK)
    print(printable(f"{index.get('namespace')}/{index.get('name')}  [{index.get('domain')}]"))
    if index.get("summary"):
        print(f"  {printable(index['summary'])}")
    for release in index.get("releases", []):
        yanked = (
            f"  YANKED: {release.get('yanked_reason') or 'no reason given'}"
            if release.get("yanked")
            else ""
        )
        print(printable(f"  {release.get('version')}{yanked}"))
        for artifact in release.get("artifacts", []):
            fingerprint, size = artifact.get("fingerprint"), artifact.get("size")
            print(printable(f"    {fingerprint}  {size} bytes  sha256:{artifact.get('sha256')}"))
    return int(ExitCode.OK)


# -- install, upgrade, remove --------------------------------------------------------------


def _report(
    target: install.ModelTarget,
    actions: list[InstallAction],
    *,
    dry_run: bool,
    as_json: bool,
) -> None:
    if as_json:
        _print_json(
            {
                "dry_run": dry_run,
                "model": str(target.path),
                "fingerprint": target.fingerprint,
                "packages": [action.as_json() for action in actions],
            }
        )
        return
    for action in actions:
        if action.action == "unchanged":
            print(f"{action.name} {action.version} already installed")
            continue
        done = {
            "install": "installed",
            "upgrade": "upgraded",
            "downgrade": "downgraded",
            "reinstall": "reinstalled",
        }[action.action]
        before = f" (was {action.previous})" if action.previous else ""
        if dry_run:
            print(f"would {action.action} {action.name} {action.version}{before}")
        else:
            print(f"{done} {action.name} {action.version}{before}")


def _warn(actions: list[InstallAction]) -> None:
    for action in actions:
        for message in action.warnings:
            verbosity.warn(printable(message))


def _install(args: argparse.Namespace) -> int:
    if args.requirements and args.specs:
        raise UsageError("give package specs or -r LOCKFILE, not both")
    if not args.requirements and not args.specs:
        raise UsageError("nothing to install: give SPEC... or -r LOCKFILE")
    if args.requirements:
        return _install_lockfile(args)
    specs = [install.parse_spec(text) for text in args.specs]  # every spec checked up front
    _refuse_duplicates([f"{s.namespace}/{s.name}" if s.namespace else s.name for s in specs])
    target = install.model_target(args.model)
    state = store.read_installed(target.fingerprint)
    with _client(args.registry) as client:
        signed = _signed_index(client.base_url, offline_ok=True)
        actions = install_plan.plan_install(
            state,
            specs,
            lambda spec: install.resolve_spec(
                client, spec, target.fingerprint, allow_prerelease=args.pre, signed=signed
            ),
            upgrade=args.upgrade,
            allow_downgrade=args.allow_downgrade,
            yank_state=lambda name, version: _yank_state(client, name, version, signed),
        )
        # `harm` and `acme/harm` are one package only once resolved: checked before any download.
        _refuse_duplicates([action.name for action in actions])
        _warn(actions)
        if not args.dry_run:
            install.carry_out(client, target, actions, client.base_url, signed)
    _report(target, actions, dry_run=args.dry_run, as_json=args.json)
    return int(ExitCode.OK)


def _refuse_duplicates(names: list[str]) -> None:
    """One package twice in one command (`a@1.2.1 a@1.2.0`) has no meaning: which one wins
    would depend on the order, so it is a usage error before anything is resolved."""
    from collections import Counter

    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise UsageError(
            f"{', '.join(repeated)} given more than once: name each package once per command"
        )


def _install_lockfile(args: argparse.Namespace) -> int:
    source = Path(args.requirements)
    try:
        text = source.read_text("utf-8")
    except FileNotFoundError as error:
        raise NotFoundError(f"lockfile {str(source)!r} does not exist") from error
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read lockfile {str(source)!r}: {error}") from error
    locked = lockfile.loads(text, str(source))
    target = install.model_target(args.model)
    with _lock_registries(locked, args.registry) as yank_state:
        actions = install.install_locked(
            target,
            locked,
            source=str(source),
            registry=args.registry,
            dry_run=args.dry_run,
            yank_state=yank_state,
        )
    _warn(actions)
    _report(target, actions, dry_run=args.dry_run, as_json=args.json)
    return int(ExitCode.OK)


@contextmanager
def _lock_registries(locked: lockfile.Lockfile, registry: str | None) -> Iterator[YankLookup]:
    """A yank lookup for a lockfile's entries, each asked of its own registry (or
    `--registry`), one client per registry, closed afterwards."""
    from ppatch.registry.client import RegistryClient

    registry_of = {
        entry.name: config.resolve_registry(registry or entry.registry)
        for entry in locked.entries
        if registry or entry.registry
    }
    clients: dict[str, RegistryClient] = {}
    signed: dict[str, Any] = {}

    def lookup(name: str, version: str) -> YankState:
        from ppatch.errors import NetworkError

        url = registry_of.get(name)
        if url is None:
            return YankState(known=False)
        if url not in clients:
            clients[url] = RegistryClient(url)
            try:
                signed[url] = _signed_index(clients[url].base_url, offline_ok=True)
            except NetworkError:  # offline or unreachable: the yank state is then unknown
                signed[url] = None
        return _yank_state(clients[url], name, version, signed[url])

    try:
        yield lookup
    finally:
        for client in clients.values():
            client.close()


def _upgrade(args: argparse.Namespace) -> int:
    target = install.model_target(args.model)
    state = store.read_installed(target.fingerprint)
    if not state.patches:
        verbosity.note(f"no patches installed on {target.path}; nothing to upgrade")
    chosen = (
        [installed.find_installed(state, name) for name in args.names]
        if args.names
        else list(state.patches)
    )
    missing = [name for name, patch in zip(args.names, chosen, strict=False) if patch is None]
    if missing:
        raise NotFoundError(f"not installed on this model: {', '.join(missing)}")
    from contextlib import ExitStack

    from ppatch.registry.client import RegistryClient

    # The rule `outdated` follows too (docs/cli.md): each installed patch is checked against
    # the registry it was installed from, unless --registry names one for all of them.
    by_registry: dict[str, list[store.InstalledPatch]] = {}
    for patch in chosen:
        assert patch is not None
        url = config.resolve_registry(args.registry or patch.registry)
        by_registry.setdefault(url, []).append(patch)
    planned: dict[str, tuple[InstallAction, RegistryClient, Any]] = {}
    with ExitStack() as stack:
        for url, patches in by_registry.items():
            verbosity.detail(f"registry {url}")
            client = stack.enter_context(RegistryClient(url))
            signed = _signed_index(client.base_url, offline_ok=True)
            for action in _plan_upgrade(client, target, patches, signed):
                planned[action.name] = (action, client, signed)
        actions = [planned[patch.name][0] for patch in chosen if patch is not None]
        if not args.dry_run:
            # Every download verified first, from its own registry; one record at the end.
            for action, client, signed in planned.values():
                if action.changes:
                    assert action.pin is not None
                    install.fetch_verified(client, action.pin, target.fingerprint, signed)
            entries = [
                action.installed_entry(client.base_url)
                for action, client, _signed in planned.values()
                if action.changes
            ]
            if entries:
                install.record(target, entries)
    _report(target, actions, dry_run=args.dry_run, as_json=args.json)
    return int(ExitCode.OK)


def _plan_upgrade(
    client: RegistryClient,
    target: install.ModelTarget,
    patches: list[store.InstalledPatch],
    signed: Any = None,
) -> list[InstallAction]:
    """The upgrade plan of `patches`, all from the registry `client` talks to (checked
    against its `signed` index when it signs one)."""
    return install_plan.plan_upgrade(
        patches,
        lambda spec: install.resolve_spec(client, spec, target.fingerprint, signed=signed),
        lambda patch: install.is_yanked(client, patch, signed),
    )


def _yank_state(
    client: RegistryClient, full_name: str, version: str, signed: Any = None
) -> YankState:
    """What the registry's index (its `signed` one when given) says of one release; unknown
    when the registry cannot be asked (offline with no cached index, unreachable, package
    gone)."""
    from ppatch.errors import PpatchError

    namespace, name = full_name.split("/", 1)
    try:
        release = _release_state(client, namespace, name, version, signed)
    except PpatchError:
        return YankState(known=False)
    if release is None:
        return YankState(known=False)
    return YankState(yanked=bool(release.get("yanked")), reason=release.get("yanked_reason"))


def _remove(args: argparse.Namespace) -> int:
    target = install.model_target(args.model)
    with store.model_lock(target.fingerprint):
        state = store.read_installed(target.fingerprint)
        found = installed.find_installed(state, args.name)
        if found is None:
            raise NotFoundError(f"{args.name!r} is not installed on {str(target.path)!r}")
        state.remove(found.name)
        store.write_installed(state)
    print(f"removed {found.name} {found.version}")
    return int(ExitCode.OK)


# -- list, freeze, outdated ----------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    target = install.model_target(args.model)
    state = store.read_installed(target.fingerprint)
    if args.json:
        _print_json(
            {
                "model": str(target.path),
                "fingerprint": target.fingerprint,
                "packages": [
                    {
                        "name": patch.name,
                        "version": patch.version,
                        "sha256": patch.sha256,
                        "registry": patch.registry,
                        "path": str(store.blob_path(patch.sha256)),
                    }
                    for patch in state.patches
                ],
            }
        )
        return int(ExitCode.OK)
    if not state.patches:
        verbosity.note(f"no patches installed on {target.path}")
    for patch in state.patches:
        print(f"{patch.name} {patch.version}")
    return int(ExitCode.OK)


def _freeze(args: argparse.Namespace) -> int:
    target = install.model_target(args.model)
    text = lockfile.dumps(store.read_installed(target.fingerprint))
    if args.output:
        atomic_write_text(Path(args.output), text, mode=None, make_parents=True)
    else:
        sys.stdout.write(text)
    return int(ExitCode.OK)


def _newer(latest: str, installed: str) -> bool:
    # Equal strings are the common answer in a cron job; comparing them needs no parsing, and
    # parsing needs `semantic_version`, which is slow to import.
    if latest == installed:
        return False
    from patchfmt import parse_version

    return bool(parse_version(latest) > parse_version(installed))


def _signed_index(registry: str, *, offline_ok: bool = False) -> Any:
    """The registry's refreshed signed index (`StaleIndexError`, exit 9, when expired or
    rolled back), or None when it has never signed one. With `offline_ok`, None under
    `PPATCH_OFFLINE` too: install and upgrade then work from the cached package indexes and
    the blob cache as before, with nothing to refresh the signed index from."""
    from ppatch import constants
    from ppatch.registry.signed_index import refreshed_signed_index

    if offline_ok and constants.offline():
        return None
    return refreshed_signed_index(registry)


def _signed_answer(signed: Any, patch: store.InstalledPatch, fingerprint: str) -> dict[str, Any]:
    """The update check's answer for `patch`, from the registry's signed index alone."""
    from ppatch.signed_check import signed_update

    namespace, name = patch.name.split("/", 1)
    index = signed.package_index(namespace, name)
    return signed_update(index, patch.name, patch.version, fingerprint)


def _unsigned_answers(
    registry: str, patches: list[store.InstalledPatch], fingerprint: str
) -> dict[str, dict[str, Any]]:
    from ppatch.registry.update_check import check_updates

    print(
        f"ppatch: warning: {registry} does not sign its index: freshness not confirmed (a "
        "replayed or frozen answer, or a hidden yank, would go unnoticed)",
        file=sys.stderr,
    )
    answers = check_updates(
        registry,
        [
            {"name": patch.name, "version": patch.version, "fingerprint": fingerprint}
            for patch in patches
        ],
    )
    return {str(answer.get("name")): answer for answer in answers}


def _outdated(args: argparse.Namespace) -> int:
    target = install.model_target(args.model)
    state = store.read_installed(target.fingerprint)
    if not state.patches:
        verbosity.note(f"no patches installed on {target.path}; nothing to check")
    by_registry: dict[str, list[store.InstalledPatch]] = {}
    for patch in state.patches:
        registry = config.resolve_registry(args.registry or patch.registry)
        by_registry.setdefault(registry, []).append(patch)
    rows: list[dict[str, Any]] = []
    for registry, patches in by_registry.items():
        # A registry that signs its index is asked nothing else: the signed targets hold every
        # release and yank, so the unsigned update check would only add a request to distrust.
        signed = _signed_index(registry)
        by_name = (
            {} if signed is not None else _unsigned_answers(registry, patches, target.fingerprint)
        )
        for patch in patches:
            answer = (
                _signed_answer(signed, patch, target.fingerprint)
                if signed is not None
                else by_name.get(patch.name, {})
            )
            latest = answer.get("latest")
            rows.append(
                {
                    "name": patch.name,
                    "installed": patch.version,
                    "latest": latest,
                    "found": bool(answer.get("found", False)),
                    "update_available": bool(latest) and _newer(str(latest), patch.version),
                    "yanked": bool(answer.get("yanked", False)),
                    "yanked_reason": answer.get("yanked_reason"),
                }
            )
    attention = any(row["update_available"] or row["yanked"] for row in rows)
    if args.json:
        _print_json(
            {
                "model": str(target.path),
                "fingerprint": target.fingerprint,
                "outdated": attention,
                "packages": rows,
            }
        )
    else:
        for row in rows:
            notes = []
            if row["update_available"]:
                notes.append(f"update available: {row['latest']}")
            if row["yanked"]:
                notes.append(f"YANKED: {row['yanked_reason'] or 'no reason given'}")
            if not row["found"]:
                notes.append("not found on the registry")
            print(
                printable(f"{row['name']} {row['installed']}  {'; '.join(notes) or 'up to date'}")
            )
    return int(ExitCode.UPDATES_AVAILABLE if attention else ExitCode.OK)


# -- publishing ----------------------------------------------------------------------------


def _publish(args: argparse.Namespace) -> int:
    from patchfmt import read_patch

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise NotFoundError(f"file {str(path)!r} does not exist") from error
    patch = read_patch(data)
    if patch.signature is None:
        from patchfmt.errors import SignatureError

        raise SignatureError(
            f"{str(path)!r} is not signed; registries accept only signed patches "
            "(sign it with 'ppatch sign FILE --key KEY')"
        )
    namespace, name = patch.manifest.name.split("/", 1)
    with _client(args.registry, with_token=True) as client:
        answer = client.publish(namespace, name, path.name, data)
        registry = client.base_url
    created = bool(answer.get("created", True))
    if args.json:
        _print_json(
            {
                "name": answer.get("name"),
                "version": answer.get("version"),
                "fingerprint": answer.get("fingerprint"),
                "sha256": answer.get("sha256"),
                "size": answer.get("size"),
                "url": answer.get("url"),
                "registry": registry,
                "created": created,
            }
        )
        return int(ExitCode.OK)
    what = "published" if created else "already published (identical bytes; nothing changed):"
    print(
        printable(
            f"{what} {answer.get('name')} {answer.get('version')} "
            f"for {answer.get('fingerprint')} (sha256 {answer.get('sha256')})"
        )
    )
    return int(ExitCode.OK)


def _release_state(
    client: RegistryClient, namespace: str, name: str, version: str, signed: Any = None
) -> dict[str, Any] | None:
    """The index's entry for one release (the `signed` index's when given), or None when the
    registry does not list it."""
    from patchfmt import parse_version

    wanted = parse_version(version)
    index = signed.package_index(namespace, name) if signed else client.get_index(namespace, name)
    for release in index.get("releases", []):
        if parse_version(str(release.get("version"))) == wanted:
            return dict(release)
    return None


def _yank(args: argparse.Namespace, *, yanked: bool) -> int:
    namespace, name, version = _split_exact(args.release)
    if yanked and not args.reason.strip():
        raise UsageError("--reason must not be empty: say why users should move off this release")
    with _client(args.registry, with_token=True) as client:
        before = _release_state(client, namespace, name, version)
        was_yanked = bool(before and before.get("yanked"))
        if before is not None and not yanked and not was_yanked:
            # Unyanking what was never yanked: nothing to do, and saying "unyanked" would
            # suggest it had been withdrawn.
            changed = False
            answer: dict[str, Any] = {"name": f"{namespace}/{name}", "version": version}
        else:
            answer = client.set_yanked(
                namespace, name, version, yanked=yanked, reason=args.reason if yanked else None
            )
            changed = was_yanked != yanked or (
                yanked and before is not None and before.get("yanked_reason") != args.reason
            )
    full, exact = str(answer.get("name")), str(answer.get("version"))
    if args.json:
        _print_json(
            {
                "name": full,
                "version": exact,
                "yanked": yanked,
                "yanked_reason": args.reason if yanked else None,
                "changed": changed,
            }
        )
        return int(ExitCode.OK)
    if not yanked and not changed:
        print(f"{full} {exact} was not yanked; nothing changed")
    elif yanked and was_yanked:
        print(f"{full} {exact} was already yanked; reason now: {args.reason}")
    else:
        print(f"{'yanked' if yanked else 'unyanked'} {full} {exact}")
    return int(ExitCode.OK)


def _login(args: argparse.Namespace) -> int:
    from patchfmt.tokens import looks_like_token

    url = config.resolve_registry(args.registry)
    token = args.token
    if token is None:
        token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = token.strip()
    if not looks_like_token(token):
        shown = token if len(token) <= 12 else token[:8] + "..."
        raise UsageError(
            f"{shown!r} is not a registry token: tokens look like 'ppr_<16 hex>_<43 characters>', "
            "as printed by 'ppatch-registry token create'"
        )
    identity = None
    if args.check:
        from ppatch.registry.client import RegistryClient

        with RegistryClient(url, token=token) as client:
            identity = client.token_info()
    config.save_token(url, token)
    settings = config.load_config()
    if settings.default_registry is None:
        settings.default_registry = url
        config.save_config(settings)
    if identity is not None:
        print(
            f"token saved for {url} (checked: namespace {identity.get('namespace')!r}, "
            f"scope {identity.get('scope')!r})"
        )
    else:
        print(f"token saved for {url} (not checked; 'ppatch login --check' asks the registry)")
    return int(ExitCode.OK)


def _trust(args: argparse.Namespace) -> int:
    from ppatch import trust

    if "/" in args.namespace or not args.namespace.strip():
        raise UsageError(f"{args.namespace!r} is not a namespace: expected a name such as 'acme'")
    if args.public_key:
        url = config.resolve_registry(args.registry)
        key_id = trust.trust_public_key_file(url, args.namespace, Path(args.public_key))
        print(f"pinned key {key_id} for namespace {args.namespace!r} on {url}")
        return int(ExitCode.OK)
    with _client(args.registry) as client:
        change = trust.keys_change(client, args.namespace, _signed_index(client.base_url))
    if change.changed and not _confirm_keys(change, assume_yes=args.yes):
        raise VerificationError(
            f"the keys of namespace {args.namespace!r} on {change.registry} were not changed"
        )
    trust.pin_keys(change.registry, args.namespace, change.new)
    print(
        printable(
            f"pinned {len(change.new)} key(s) for namespace {args.namespace!r} on "
            f"{change.registry}: {', '.join(sorted(change.new))}"
        )
    )
    return int(ExitCode.OK)


def _confirm_keys(change: Any, *, assume_yes: bool) -> bool:
    """Show the pinned and the offered keys side by side; True when the user accepts."""
    old = sorted(change.old or {})
    new = sorted(change.new)
    width = max((len(key) for key in old), default=6)
    print(f"the keys of namespace {change.namespace!r} on {change.registry} changed:")
    print(f"  {'pinned':<{width}}  offered now")
    for index in range(max(len(old), len(new))):
        left = old[index] if index < len(old) else ""
        right = new[index] if index < len(new) else ""
        print(printable(f"  {left:<{width}}  {right}"))
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            "the namespace's keys changed: check the new key ids with the publisher, then "
            "rerun with --yes"
        )
    return input("pin the keys offered now? [y/N] ").strip().lower() in ("y", "yes")


# -- registration --------------------------------------------------------------------------


def _registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        metavar="URL",
        help="registry URL or configured name (default: PPATCH_REGISTRY, then the config file)",
    )


def _model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="local model directory or a repo id in the local Hugging Face cache",
    )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("search", help="find patches on the registry")
    parser.add_argument("query", nargs="?", help="words to look for")
    parser.add_argument("--domain", help="toxicity, bias, harm or custom:<word>")
    parser.add_argument("--model", metavar="MODEL", help="only patches built for this model")
    _registry_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=_search)

    parser = subparsers.add_parser("info", help="show a package's releases and artifacts")
    parser.add_argument("package", metavar="NS/NAME")
    _registry_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=_info)

    parser = subparsers.add_parser("install", help="install patches for a model")
    parser.add_argument("specs", nargs="*", metavar="SPEC", help="[namespace/]name[@range]")
    parser.add_argument("-r", "--requirements", metavar="LOCKFILE", help="install a lockfile")
    _model_option(parser)
    parser.add_argument(
        "--upgrade", action="store_true", help="move to the newest matching release"
    )
    parser.add_argument("--pre", action="store_true", help="consider pre-releases")
    parser.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="install an older release than the one installed (refused otherwise)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change, change nothing"
    )
    _registry_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=_install)

    parser = subparsers.add_parser("remove", help="uninstall a patch from a model")
    parser.add_argument("name", metavar="NAME", help="[namespace/]name")
    _model_option(parser)
    parser.set_defaults(handler=_remove)

    parser = subparsers.add_parser("list", help="show a model's installed patches, in order")
    _model_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=_list)

    parser = subparsers.add_parser("freeze", help="write a lockfile of a model's patches")
    _model_option(parser)
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(handler=_freeze)

    parser = subparsers.add_parser(
        "outdated", help="check for updates and yanks (exit 1 when something needs attention)"
    )
    _model_option(parser)
    _registry_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=_outdated)

    parser = subparsers.add_parser("upgrade", help="upgrade installed patches")
    parser.add_argument("names", nargs="*", metavar="NAME", help="packages (default: all)")
    _model_option(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change, change nothing"
    )
    _registry_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=_upgrade)

    parser = subparsers.add_parser("publish", help="upload a signed .ppatch file")
    parser.add_argument("file", metavar="FILE")
    _registry_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=_publish)

    parser = subparsers.add_parser("yank", help="mark a release as withdrawn")
    parser.add_argument("release", metavar="NS/NAME@VERSION")
    parser.add_argument("--reason", required=True, help="why users should move off it")
    _registry_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=lambda args: _yank(args, yanked=True))

    parser = subparsers.add_parser("unyank", help="undo a yank")
    parser.add_argument("release", metavar="NS/NAME@VERSION")
    _registry_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=lambda args: _yank(args, yanked=False))

    parser = subparsers.add_parser("login", help="store a token for a registry")
    parser.add_argument("--token", help="the token (default: read from the terminal or stdin)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="ask the registry whether the token is valid before saving it",
    )
    _registry_option(parser)
    parser.set_defaults(handler=_login)

    parser = subparsers.add_parser("trust", help="pin a namespace's signing keys")
    parser.add_argument("namespace", metavar="NS")
    parser.add_argument(
        "--public-key", metavar="PUB", help="pin this PEM key instead of the registry's"
    )
    parser.add_argument("--yes", action="store_true", help="accept changed keys without asking")
    _registry_option(parser)
    parser.set_defaults(handler=_trust)
