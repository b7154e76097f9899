"""The ``x-flexsync-*`` headers of a failed message: a contract between the workers that write
them and the operations tools (``flexsync dead``, replay filters) that read them."""

from __future__ import annotations

REASON = "x-flexsync-reason"
EXCEPTION = "x-flexsync-exception"
ATTEMPTS = "x-flexsync-attempts"
ORIGINAL_ROUTING_KEY = "x-flexsync-original-routing-key"
ORIGINAL_QUEUE = "x-flexsync-original-queue"
FAILED_AT = "x-flexsync-failed-at"
# Marks the second look at a record that was still changing when first read (not a failure).
RECHECK = "x-flexsync-recheck"
# When the message first failed: a transient failure is retried until this is ARCHIVE_MAX_AGE old.
FIRST_FAILED_AT = "x-flexsync-first-failed-at"
# When a message put in a delay queue is due back (its queue's delay after it went in): a worker
# moves one the broker kept well past this back itself (workers.runtime.consumer, "overdue").
DUE_AT = "x-flexsync-due-at"
