"""Hostile command-line input: the `keys` commands answer arbitrary arguments and files with a
usage error or a clear message (exit 1 or 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.identity.commands import keys
from sdlcflow.identity.keys import generate_key_pair, save_private_key

CLI_CASES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30
)


def _clean_exit(exit_code: int, exception: BaseException | None) -> bool:
    return exception is None or (isinstance(exception, SystemExit) and exit_code in (0, 1, 2))


class TestKeysCommandInputs:
    """`keys issue` and `keys revoke` with arbitrary values: a message and exit 1/2 at worst."""

    @CLI_CASES
    @given(ttl=words, subject=words, kind=words, capability=words, repo=words)
    def test_issue_with_arbitrary_values(
        self, tmp_path: Path, ttl: str, subject: str, kind: str, capability: str, repo: str
    ) -> None:
        issuer = tmp_path / "ops.key"
        if not issuer.exists():
            save_private_key(generate_key_pair("ops"), issuer)
        result = CliRunner().invoke(
            keys,
            [
                "issue",
                "--issuer-key",
                str(issuer),
                "--subject",
                subject,
                "--kind",
                kind,
                "--capability",
                capability,
                "--repo",
                repo,
                "--ttl",
                ttl,
            ],
        )
        assert _clean_exit(result.exit_code, result.exception), result.output
        assert "Traceback" not in result.output

    @CLI_CASES
    @given(content=st.binary(max_size=200), credential=words)
    def test_revoke_with_an_arbitrary_existing_list(
        self, tmp_path: Path, content: bytes, credential: str
    ) -> None:
        listing = tmp_path / "revoked.json"
        listing.write_bytes(content)
        result = CliRunner().invoke(
            keys, ["revoke", "--list", str(listing), "--credential", credential or "x"]
        )
        assert _clean_exit(result.exit_code, result.exception), result.output

    @CLI_CASES
    @given(content=st.binary(max_size=200))
    def test_rotate_with_an_arbitrary_issuers_file(self, tmp_path: Path, content: bytes) -> None:
        issuers = tmp_path / "issuers.json"
        issuers.write_bytes(content)
        out = tmp_path / "new.key"
        out.unlink(missing_ok=True)
        out.with_name("new.key.pub").unlink(missing_ok=True)
        result = CliRunner().invoke(
            keys, ["rotate", "--issuers", str(issuers), "--new-id", "ops-new", "--out", str(out)]
        )
        assert _clean_exit(result.exit_code, result.exception), result.output
