"""`faust -A sdlcflow.processors.app worker`: the coordinator app configured from the environment.

See `sdlcflow.processors.config` for the variables; `sdlcflow run processors` builds its app
with `create_app` directly and never imports this module.
"""

from __future__ import annotations

from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.shell import create_app

app = create_app(ProcessorConfig.from_env())
