"""Staff pages: operations (queue health) and insights."""

from django.urls import path

from jobs import ops

urlpatterns = [
    path("ops/", ops.operations, name="ops"),
    path("insights/", ops.insights_page, name="insights"),
]
