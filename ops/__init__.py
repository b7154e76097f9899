"""Operations tools: browse, replay and purge dead letters, replay the archive, gather status."""
