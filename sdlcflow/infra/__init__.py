"""Local infrastructure: the Kafka broker and Cassandra node sdlcflow runs against.

`sdlcflow.infra.local` is the API (`ensure_up`, `stop`, `start_server`, `stop_server`,
`server_status`); `sdlcflow.infra.commands` puts it on the command line as `up`, `down`,
`status` and `migrate`. Servers given by address (SDLCFLOW_KAFKA_BOOTSTRAP,
SDLCFLOW_CASSANDRA_HOSTS) are never started, only waited for and prepared.
"""
