"""Staff pages: operations (queue health) and insights."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
