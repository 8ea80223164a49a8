"""domos shared runtime: config, database layer, logging, metrics, monitor base and CLI."""
