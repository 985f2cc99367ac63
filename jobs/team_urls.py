"""Team administration pages for team admins."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
