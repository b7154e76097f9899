"""The runtime every consumer runs on: the consumer base (and its stream reader), its middleware, and the process helpers."""
