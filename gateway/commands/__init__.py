"""One module per CLI command; each has `main(args) -> exit code`."""
