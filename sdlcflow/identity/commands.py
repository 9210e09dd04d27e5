"""`sdlcflow keys ...`: key pairs, scoped credentials, issuer key rotation and revocation."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import click

from sdlcflow.core.events import ActorKind
from sdlcflow.errors import SdlcflowError
from sdlcflow.identity.credentials import CredentialClaims, issue_credential
from sdlcflow.identity.issuers import prune, read_entries, rotate, write_entries
from sdlcflow.identity.keys import generate_key_pair, load_private_key, save_private_key
from sdlcflow.identity.revocation import read_revocations, write_revocations

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_issuers_option = click.option(
    "--issuers",
    "issuers_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SDLCFLOW_TRUSTED_ISSUERS",
    help="Trusted issuers file the coordinator reads. Env: SDLCFLOW_TRUSTED_ISSUERS.",
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fail(exc: SdlcflowError) -> click.ClickException:
    return click.ClickException(str(exc))


def _new_key_files(key_id: str, out: Path) -> tuple[str, Path]:
    """Create the private key file (0600) and FILE.pub; return the public key and its file."""
    try:
        pair = generate_key_pair(key_id)
        save_private_key(pair, out)
    except FileExistsError:
        raise click.ClickException(f"{out} exists; choose another --out or remove it") from None
    except SdlcflowError as exc:
        raise _fail(exc) from None
    public_file = out.with_name(out.name + ".pub")
    public_file.write_text(pair.public_key_b64 + "\n", encoding="utf-8")
    return pair.public_key_b64, public_file


@click.group()
def keys() -> None:
    """Ed25519 keys for reviewers, agents and ops; scoped credentials signed by ops."""


@keys.command("new")
@click.option("--id", "key_id", required=True, help="Key id, e.g. reviewer-alice or ops-2024-06.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file to create (mode 0600); the public key goes to FILE.pub.",
)
@_json_option
def keys_new(key_id: str, out: Path, as_json: bool) -> None:
    """Create a key pair: private key file (0600) and its public key (printed and FILE.pub)."""
    public_key, public_file = _new_key_files(key_id, out)
    info = {"key_id": key_id, "public_key": public_key, "private_key_file": str(out)}
    if as_json:
        click.echo(json.dumps(info | {"public_key_file": str(public_file)}))
    else:
        click.echo(f"private key: {out} (0600)\npublic key ({public_file}):\n{public_key}")


@keys.command("issue")
@click.option(
    "--issuer-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="SDLCFLOW_ISSUER_KEY",
    help="Ops private key file that signs. Env: SDLCFLOW_ISSUER_KEY.",
)
@click.option("--subject", required=True, help="Actor id the credential is for.")
@click.option("--kind", type=click.Choice(["agent", "human", "ops"]), required=True)
@click.option("--capability", "capabilities", multiple=True, required=True, help="Repeatable.")
@click.option("--repo", "repos", multiple=True, help="Repository glob the actor may act on.")
@click.option("--path", "paths", multiple=True, help="Path glob the actor may touch. Repeatable.")
@click.option("--env", "environments", multiple=True, help="Environment. Repeatable.")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 30m, 1h, 12h (max 24h).")
@click.option("--actor-key", default=None, help="Bind the actor's base64url public key.")
def keys_issue(
    issuer_key: Path,
    subject: str,
    kind: str,
    capabilities: tuple[str, ...],
    repos: tuple[str, ...],
    paths: tuple[str, ...],
    environments: tuple[str, ...],
    ttl: str,
    actor_key: str | None,
) -> None:
    """Issue a short-lived scoped credential and print the token."""
    from sdlcflow.policy.backtest import parse_duration_ms

    try:
        issuer = load_private_key(issuer_key)
        now = _now_ms()
        claims = CredentialClaims(
            credential_id=f"cred-{uuid.uuid4().hex[:16]}",
            subject=subject,
            kind=ActorKind(kind),
            capabilities=capabilities,
            repos=repos,
            paths=paths,
            environments=environments,
            issued_at=now,
            expires_at=now + parse_duration_ms(ttl),
            issuer_key_id=issuer.key_id,
            actor_key=actor_key,
        )
        click.echo(issue_credential(claims, issuer))
    except SdlcflowError as exc:
        raise _fail(exc) from None


@keys.command("rotate")
@_issuers_option
@click.option("--new-id", required=True, help="Id of the new issuer key, e.g. ops-2026-11.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file to create for the new issuer key (mode 0600).",
)
@_json_option
def keys_rotate(issuers_file: Path, new_id: str, out: Path, as_json: bool) -> None:
    """Make a new issuer key and trust it; retire the active ones (they drain).

    Credentials signed by a retired key stay valid until they expire; it signs nothing valid
    after its retirement. Keys retired longer ago than the maximum credential lifetime are
    dropped from the file. The coordinator picks the change up without a restart.
    """
    try:
        entries = read_entries(issuers_file)
        public_key, _ = _new_key_files(new_id, out)
        now = _now_ms()
        rotated = prune(rotate(entries, new_id, public_key, now), now)
        write_entries(issuers_file, rotated)
    except SdlcflowError as exc:
        raise _fail(exc) from None
    draining = sorted(k for k, e in rotated.items() if e.retired_at is not None)
    dropped = sorted(set(entries) - set(rotated))
    info = {
        "active": new_id,
        "draining": draining,
        "dropped": dropped,
        "private_key_file": str(out),
    }
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(
            f"active issuer key: {new_id} (private key {out}); draining: "
            f"{', '.join(draining) or 'none'}; dropped: {', '.join(dropped) or 'none'}\n"
            f"issue new credentials with --issuer-key {out}"
        )


@keys.command("revoke")
@click.option(
    "--list",
    "revocations_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SDLCFLOW_REVOKED_CREDENTIALS",
    help="Revocation list the coordinator reads. Env: SDLCFLOW_REVOKED_CREDENTIALS.",
)
@click.option("--credential", "credential_ids", multiple=True, help="Credential id. Repeatable.")
@click.option(
    "--actor", "actor_ids", multiple=True, help="Actor: every credential issued until now."
)
@_json_option
def keys_revoke(
    revocations_file: Path,
    credential_ids: tuple[str, ...],
    actor_ids: tuple[str, ...],
    as_json: bool,
) -> None:
    """Revoke credentials by id, or all current credentials of actors; the coordinator rejects
    (and records) their events from its next look at the file, within seconds."""
    if not credential_ids and not actor_ids:
        raise click.UsageError("name at least one --credential or --actor to revoke")
    try:
        now = _now_ms()
        revocations = read_revocations(revocations_file).prune(now)
        for credential_id in credential_ids:
            revocations = revocations.revoke_credential(credential_id, now)
        for actor_id in actor_ids:
            revocations = revocations.revoke_actor(actor_id, now)
        write_revocations(revocations_file, revocations)
    except SdlcflowError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(revocations.to_json() | {"revoked_at": now}))
    else:
        click.echo(
            f"revoked {len(credential_ids)} credential(s) and {len(actor_ids)} actor(s) in "
            f"{revocations_file}"
        )
