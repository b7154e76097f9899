"""The reliability machinery every layer shares: rooted errors, backoff, Retry-After, leases."""
