from __future__ import annotations

from django.urls import path

from jobs import consumers

websocket_urlpatterns = [
    path("ws/dashboard/", consumers.DashboardConsumer.as_asgi()),
    path("ws/jobs/<str:public_id>/", consumers.JobConsumer.as_asgi()),
]
