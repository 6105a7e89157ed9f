"""The `ppatch` command line; see `ppatch.cli.main`."""
