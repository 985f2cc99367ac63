from django.urls import path

from notify import views

urlpatterns = [
    path("settings/notifications/", views.preferences, name="notify-settings"),
    path("notify/subscriptions", views.subscriptions, name="notify-subscriptions"),
    path("notify/vapid-public-key", views.vapid_public_key, name="notify-vapid-public-key"),
    # The service worker must be served from the root to control every page.
    path("sw.js", views.service_worker, name="service-worker"),
]
