"""The dead letters: stored from the parking queue, browsed, replayed or purged; the archive replayed."""
