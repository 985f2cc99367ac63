from __future__ import annotations

from typing import Any

# The browser consumers (/ws/dashboard/, /ws/jobs/<id>/) arrive with the dashboard; the groups
# they will join are already fed by jobs.events.
websocket_urlpatterns: list[Any] = []
