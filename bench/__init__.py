"""The ingest benchmark (`make bench`): see bench/README.md."""
