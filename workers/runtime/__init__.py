"""The runtime every worker runs on: the consumer base, its middleware, and the process helper."""
