"""Head moves re-run the DAG; when the change touches new paths its contracts and claims follow."""

from __future__ import annotations

from core_world import PRODUCER, World, of_type, types

from sdlcflow.core import events as ev


def _move(world: World, change_id: str, head: str, paths: tuple[str, ...]) -> tuple[ev.Event, ...]:
    update = ev.ChangeUpdated("b0", head, "l1", paths=paths)
    return world.send(update, PRODUCER, change_id=change_id)


class TestHeadMoves:
    """A new head revokes, invalidates and re-runs; a re-request with the same head is a no-op."""

    def test_same_head_again_changes_nothing(self) -> None:
        world = World()
        world.request("c1")
        before = world.state
        assert world.request("c1") == ()
        assert world.state == before

    def test_an_update_older_than_the_one_that_set_the_head_changes_nothing(self) -> None:
        world = World()
        world.request("c1")
        late = world.event(ev.ChangeUpdated("b0", "h2", "l1"), PRODUCER, change_id="c1")
        world.now += 10
        _move(world, "c1", "h3", ())
        before = world.state
        # the update made before h3's arrives after it (reordered, or replayed)
        assert world.feed(late) == ()
        assert world.state == before
        assert world.state.changes["c1"].state.head_sha == "h3"

    def test_new_head_reruns_every_task_with_new_inputs_and_keeps_epochs(self) -> None:
        world = World()
        world.request("c1")
        world.run_step("c1", "lint")
        out = _move(world, "c1", "h2", ())
        revised = of_type(out, "ChangeRevised")[0].payload
        assert revised.revision == 1 and revised.tasks == ()
        lint = world.task("c1", "lint")
        assert lint.status.value == "OFFERED" and lint.epoch == 1
        assert ev.ArtifactRef("head", "h2") in lint.contract.inputs
        granted = of_type(world.lease("c1", "lint"), "LeaseGranted")[0].payload
        assert granted.epoch == 2

    def test_new_paths_replan_declared_outputs_and_claims(self) -> None:
        world = World()
        world.request("c1", paths=("src/app.py",))
        out = _move(world, "c1", "h2", ("src/app.py", "src/new.py"))
        revised = of_type(out, "ChangeRevised")[0].payload
        merge = {c.step: c for c in revised.tasks}["merge"]
        assert merge.outputs.paths == ("src/app.py", "src/new.py")
        assert "path:src/new.py" in world.state.changes["c1"].claims
        assert types(out)[-1] != "ResourceLeaseReleased"
        assert world.state.changes["c1"].holds

    def test_new_paths_overlapping_a_later_holder_make_the_change_wait(self) -> None:
        world = World()
        world.request("c1", paths=("src/a.py",), environments=())
        world.request("c2", paths=("src/b.py",), environments=())
        assert world.state.changes["c2"].holds
        out = _move(world, "c1", "h2", ("src/a.py", "src/b.py"))
        conflict = of_type(out, "ConflictDetected")[0]
        assert conflict.envelope.change_id == "c1"
        assert conflict.payload.other_change_id == "c2"
        assert not world.state.changes["c1"].holds
        assert world.state.holders["path:src/b.py"] == "c2"
        assert "path:src/a.py" not in world.state.holders
