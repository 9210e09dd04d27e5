import gzip
import io
import tarfile
from pathlib import Path

import pytest

from sdlcflow.artifacts import (
    ArtifactStore,
    ReleaseAction,
    ReleaseError,
    Releases,
    Slot,
    SmokeOutcome,
)


def _bundle(store: ArtifactStore, version: str, *extra: tarfile.TarInfo) -> str:
    """A tiny release tarball whose VERSION file says which build it is (plus `extra`
    members without content: links, directories, devices, files of size 0)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = version.encode()
        info = tarfile.TarInfo("VERSION")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for member in extra:
            tar.addfile(member, io.BytesIO(b""))
    return store.put(gzip.compress(raw.getvalue(), mtime=0))


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _smoke_requires(healthy: set[str]):  # type: ignore[no-untyped-def]
    """A smoke check that passes when the staged slot's VERSION is one of `healthy`."""

    def check(slot: Path) -> SmokeOutcome:
        return SmokeOutcome(passed=(slot / "VERSION").read_text() in healthy)

    return check


@pytest.fixture
def setup(tmp_path: Path) -> tuple[ArtifactStore, Releases]:
    store = ArtifactStore(tmp_path / "store")
    return store, Releases(store)


class TestReleases:
    """Environments are append-only release logs; the pointer flips only after a passing smoke."""

    def test_first_deploy_activates_the_blue_slot(
        self, setup: tuple[ArtifactStore, Releases]
    ) -> None:
        store, releases = setup
        v1 = _bundle(store, "v1")
        outcome = releases.deploy(
            "staging",
            v1,
            "a" * 40,
            by="agent:deploy",
            at=1,
            why="first",
            smoke=_smoke_requires({"v1"}),
        )
        assert outcome.live and outcome.changed
        current = releases.current("staging")
        assert current is not None
        assert (current.artifact, current.source_sha, current.slot) == (v1, "a" * 40, Slot.BLUE)
        assert (releases.slot_dir("staging", Slot.BLUE) / "VERSION").read_text() == "v1"

    def test_next_deploy_goes_to_the_other_slot_and_flips(
        self, setup: tuple[ArtifactStore, Releases]
    ) -> None:
        store, releases = setup
        smoke = _smoke_requires({"v1", "v2"})
        releases.deploy("prod", _bundle(store, "v1"), "a" * 40, by="d", at=1, why="", smoke=smoke)
        outcome = releases.deploy(
            "prod", _bundle(store, "v2"), "b" * 40, by="d", at=2, why="", smoke=smoke
        )
        assert outcome.record.slot is Slot.GREEN
        assert releases.current("prod") == outcome.record
        assert (releases.slot_dir("prod", Slot.BLUE) / "VERSION").read_text() == "v1"

    def test_failed_smoke_keeps_the_previous_release_active(
        self, setup: tuple[ArtifactStore, Releases]
    ) -> None:
        store, releases = setup
        smoke = _smoke_requires({"v1"})
        good = releases.deploy(
            "prod", _bundle(store, "v1"), "a" * 40, by="d", at=1, why="", smoke=smoke
        )
        bad = releases.deploy(
            "prod", _bundle(store, "v2"), "b" * 40, by="d", at=2, why="", smoke=smoke
        )
        assert bad.record.action is ReleaseAction.REJECTED and not bad.live
        assert bad.record.replaces == good.record.seq
        assert releases.current("prod") == good.record
        assert [r.action for r in releases.history("prod")] == [
            ReleaseAction.ACTIVATED,
            ReleaseAction.REJECTED,
        ]

    def test_deploying_the_active_release_again_changes_nothing(
        self, setup: tuple[ArtifactStore, Releases]
    ) -> None:
        store, releases = setup
        v1 = _bundle(store, "v1")
        first = releases.deploy(
            "staging", v1, "a" * 40, by="d", at=1, why="", smoke=_smoke_requires({"v1"})
        )
        again = releases.deploy(
            "staging", v1, "a" * 40, by="d", at=9, why="", smoke=_smoke_requires(set())
        )
        assert again.record == first.record and not again.changed
        assert len(releases.history("staging")) == 1

    def test_explicit_rollback_restores_the_release_before_the_last_switch(
        self, setup: tuple[ArtifactStore, Releases]
    ) -> None:
        store, releases = setup
        smoke = _smoke_requires({"v1", "v2"})
        v1 = _bundle(store, "v1")
        releases.deploy("prod", v1, "a" * 40, by="d", at=1, why="", smoke=smoke)
        releases.deploy("prod", _bundle(store, "v2"), "b" * 40, by="d", at=2, why="", smoke=smoke)
        back = releases.rollback("prod", by="human:ops", at=3, why="login errors")
        assert back.action is ReleaseAction.ROLLED_BACK
        assert releases.current("prod") == back
        assert (back.artifact, back.source_sha) == (v1, "a" * 40)
        assert (releases.slot_dir("prod", back.slot) / "VERSION").read_text() == "v1"

    def test_rollback_without_an_earlier_release_is_refused(
        self, setup: tuple[ArtifactStore, Releases]
    ) -> None:
        _store, releases = setup
        with pytest.raises(ReleaseError, match="no earlier release"):
            releases.rollback("staging", by="h", at=1, why="")

    def test_unknown_environment_is_refused_with_the_valid_names(
        self, setup: tuple[ArtifactStore, Releases]
    ) -> None:
        _, releases = setup
        with pytest.raises(ReleaseError, match="staging, prod"):
            releases.history("qa")

    def test_environments_have_separate_logs(self, setup: tuple[ArtifactStore, Releases]) -> None:
        store, releases = setup
        releases.deploy(
            "staging",
            _bundle(store, "v1"),
            "a" * 40,
            by="d",
            at=1,
            why="",
            smoke=_smoke_requires({"v1"}),
        )
        assert releases.current("prod") is None
        assert releases.history("prod") == ()


class TestUnpacking:
    """A release never writes outside its slot, whatever the tarball says."""

    @pytest.mark.parametrize(
        ("members", "problem"),
        [
            ((_member("../escaped"),), "outside the slot"),
            ((_member("/etc/escaped"),), "outside the slot"),
            ((_member("bin/../../escaped"),), "outside the slot"),
            ((_member("bin/tool", tarfile.SYMTYPE, "../../../escaped"),), "outside the slot"),
            ((_member("bin/abs", tarfile.SYMTYPE, "/etc/passwd"),), "outside the slot"),
            ((_member("bin/hard", tarfile.LNKTYPE, "VERSION"),), "not a file, directory or"),
            ((_member("dev/null", tarfile.CHRTYPE),), "not a file, directory or"),
            ((_member("VERSION"),), "appears twice"),
            # a chain of symlinks, each harmless by its name alone: q -> d/p/.. is the slot's
            # parent once d/p -> .. exists, whichever comes first in the archive
            (
                (
                    _member("d", tarfile.DIRTYPE),
                    _member("d/p", tarfile.SYMTYPE, ".."),
                    _member("q", tarfile.SYMTYPE, "d/p/.."),
                ),
                "through a symlink of the artifact",
            ),
            (
                (
                    _member("q", tarfile.SYMTYPE, "d/p/.."),
                    _member("d", tarfile.DIRTYPE),
                    _member("d/p", tarfile.SYMTYPE, ".."),
                ),
                "through a symlink of the artifact",
            ),
            (
                (_member("q", tarfile.SYMTYPE, "."), _member("q/escaped")),
                "below a symlink of the artifact",
            ),
        ],
    )
    def test_a_member_that_could_escape_the_slot_refuses_the_whole_artifact(
        self,
        setup: tuple[ArtifactStore, Releases],
        members: tuple[tarfile.TarInfo, ...],
        problem: str,
    ) -> None:
        store, releases = setup
        artifact = _bundle(store, "v1", *members)
        with pytest.raises(ReleaseError, match=problem):
            releases.deploy(
                "staging", artifact, "a" * 40, by="d", at=1, why="", smoke=_smoke_requires({"v1"})
            )
        assert releases.history("staging") == ()
        assert not (releases.slot_dir("staging", Slot.BLUE) / "VERSION").exists()

    def test_links_and_directories_inside_the_slot_are_unpacked(
        self, setup: tuple[ArtifactStore, Releases]
    ) -> None:
        store, releases = setup
        artifact = _bundle(
            store,
            "v1",
            _member("bin", tarfile.DIRTYPE),
            _member("bin/VERSION", tarfile.SYMTYPE, "../VERSION"),
        )
        outcome = releases.deploy(
            "staging", artifact, "a" * 40, by="d", at=1, why="", smoke=_smoke_requires({"v1"})
        )
        slot = releases.slot_dir("staging", outcome.record.slot)
        assert (slot / "bin" / "VERSION").read_text() == "v1"

    def test_unpacked_files_lose_setuid_and_group_or_other_write(
        self, setup: tuple[ArtifactStore, Releases]
    ) -> None:
        store, releases = setup
        tool = _member("tool")
        tool.mode = 0o6777
        outcome = releases.deploy(
            "staging",
            _bundle(store, "v1", tool),
            "a" * 40,
            by="d",
            at=1,
            why="",
            smoke=_smoke_requires({"v1"}),
        )
        mode = (releases.slot_dir("staging", outcome.record.slot) / "tool").stat().st_mode
        assert mode & 0o7777 == 0o755
