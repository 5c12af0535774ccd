"""What leaves the pipeline as events: the schema, deriving events from identify decisions, the durable
outbox, and the MQTT and webhook sinks a publisher process sends them to (docs/events.md)."""
