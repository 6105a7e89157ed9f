"""Schema revisions, oldest first; see registry_server.migrations."""
