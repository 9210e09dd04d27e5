"""Watching sdlcflow run: Prometheus metrics, OpenTelemetry spans, structured logs, lag.

- `metrics`: the registry and every metric's definition, `serve(port)`;
- `decisions`: domain metrics derived from the coordinator's decisions;
- `collectors`: agent, audit-sink and live-lease metrics read at scrape time;
- `lag`: consumer lag, group assignment and dead-letter size from the broker;
- `spans`: a span per event handled, continuing the `traceparent` of Kafka headers;
- `logs`: JSON logs bound to trace/change/task/agent ids, successes sampled;
- `service`: the CLI options and start-up shared by the long-running services.
"""
