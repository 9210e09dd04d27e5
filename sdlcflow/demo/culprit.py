"""The incident's culprit, replayed: an auto-promote-on-green deploy agent that asks for the
prod lease as soon as the checks are green. It sends a real, signed LeaseRequested with the
deploy agent's own credential; the coordinator's answer is the evidence."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from sdlcflow.agents import AgentIdentity
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.demo.errors import StepFailed
from sdlcflow.demo.watch import Match, of_type
from sdlcflow.identity.keys import load_private_key
from sdlcflow.streams.topics import AGENT_EVENTS
from sdlcflow.tracing import new_trace_id

if TYPE_CHECKING:
    from sdlcflow.demo.scenario import Play

PROD_STEP = "prod"


def grab_prod_lease(play: Play, change_id: str, since: int) -> None:
    """Ask for the prod deploy lease early; prove the coordinator refused it."""
    holder = play.stage.identities.agents.get("deploy")
    if holder is None:
        raise StepFailed(
            "promotion", "no deploy agent identity was issued; the template has no deploy step"
        )
    identity = AgentIdentity(holder.credential, key=load_private_key(holder.key_file))
    task_id = f"{change_id}/{PROD_STEP}"
    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        type="LeaseRequested",
        occurred_at=int(time.time() * 1000),
        repo=play.stage.repo,
        change_id=change_id,
        task_id=task_id,
        trace_id=new_trace_id(),
        causation_id=None,
        actor=Actor(ActorKind.AGENT, identity.actor_id),
    )
    payload = ev.LeaseRequested("deploy")
    play.producer.publisher.publish(AGENT_EVENTS, Event(identity.sign(envelope, payload), payload))
    play.producer.publisher.flush()
    play.narrator.say(
        f"an auto-promote-on-green deploy agent ({identity.actor_id}) asks for the prod lease now"
    )
    denied = play.expect(
        "LeaseDenied of the early prod lease",
        play.watch.after(since)(_denied_to(change_id, identity.actor_id)),
        play.log_hint("coordinator") + " A granted lease here would be the incident again.",
    )
    assert isinstance(denied.payload, ev.LeaseDenied)
    play.evidence("denied", f"{denied.payload.reason.value}: {denied.payload.detail}")


def _denied_to(change_id: str, holder: str) -> Match:
    is_denial = of_type("LeaseDenied", change_id=change_id, task_step=PROD_STEP)

    def match(event: Event) -> bool:
        payload = event.payload
        return is_denial(event) and isinstance(payload, ev.LeaseDenied) and payload.holder == holder

    return match
