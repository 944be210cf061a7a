"""The REST API (FastAPI), served by `pcc serve`."""
