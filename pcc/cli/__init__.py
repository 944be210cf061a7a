"""`pcc`, the command-line interface: a client of the service (or of the API)."""
