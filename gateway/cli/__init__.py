"""The `prefixgate` command line: one module per command group."""
