"""The gunicorn application the receiver runs under (ingest.server)."""

from __future__ import annotations

import gc

from config import Settings
from ingest.server import ReceiverServer


def test_a_worker_hides_what_it_loaded_from_the_garbage_collector():
    settings = Settings(flexsync_env="test", amqp_url="amqp://127.0.0.1:1/%2F", database_url="sqlite://")
    server = ReceiverServer(settings, workers=1, threads=2)
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        # gunicorn calls this in each worker once the app is loaded, before the first request.
        server.cfg.post_worker_init(None)
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    # Everything alive then (modules, the app) is out of every later collection's way.
    assert frozen > 10_000
