"""Where the page's own and vendored static files are served (one place to bump a version)."""

from __future__ import annotations

HTMX = "/static/vendor/htmx-2.0.11/htmx.min.js"
CSS = "/static/pcc.css"
SWAGGER = "/static/vendor/swagger-ui-5.35.0"  # the API docs page (pcc/api/app.py)
