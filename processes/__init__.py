"""The processes of the Procfile, each composed in one place from the shared parts and the capabilities."""
