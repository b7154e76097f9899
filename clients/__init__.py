"""Clients of the outside services flexsync calls (one subpackage each: intacct, flexpoint)."""
