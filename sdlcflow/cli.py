"""The `sdlcflow` command line.

Each part of the package owns its commands in a `commands.py` of its own; this module only
names them, and imports a part when its command is used, so `sdlcflow status` does not pay
for faust or regopy at start-up.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

# command name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "up": "sdlcflow.infra.commands:up",
    "down": "sdlcflow.infra.commands:down",
    "status": "sdlcflow.infra.commands:status",
    "migrate": "sdlcflow.infra.commands:migrate",
    "submit": "sdlcflow.streams.commands:submit",
    "events": "sdlcflow.streams.commands:events",
    "run": "sdlcflow.runner:run",
    "replay": "sdlcflow.processors.commands:replay",
    "policy": "sdlcflow.policy.commands:policy",
    "keys": "sdlcflow.identity.commands:keys",
    "approvals": "sdlcflow.approvals.commands:approvals",
    "approve": "sdlcflow.approvals.commands:approve",
    "reject": "sdlcflow.approvals.commands:reject",
    "console": "sdlcflow.console.commands:console",
    "audit": "sdlcflow.audit.commands:audit",
    "report": "sdlcflow.audit.commands:report",
    "bench": "sdlcflow.bench.commands:bench",
    "chaos": "sdlcflow.chaos.commands:chaos",
    "demo": "sdlcflow.demo.commands:demo",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when they are invoked or listed."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._available(ctx)})

    def _available(self, ctx: click.Context) -> list[str]:
        return [name for name in self._lazy if self.get_command(ctx, name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = self._lazy.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # that part of sdlcflow is not built yet
            raise
        command = getattr(module, attribute, None)
        return command if isinstance(command, click.Command) else None


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sdlcflow")
def cli() -> None:
    """Coordinate coding agents and human reviewers: plans, fenced leases, policy gates, audit."""


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    try:
        # without standalone mode click returns a command's exit code instead of exiting
        code = cli.main(args=list(args) if args is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
