"""The web page (server-rendered Jinja2 with vendored htmx), served by `pcc serve`."""
