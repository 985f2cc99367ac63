from django.contrib import admin
from django.urls import include, path

from gateway import views as gateway_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("django-rq/", include("django_rq.urls")),
    path("gateway/<str:provider>/<path:path>", gateway_views.forward, name="gateway"),
    path("", include("notify.urls")),
    path("", include("jobs.ops_urls")),
    path("", include("jobs.team_urls")),
    path("", include("jobs.urls")),
]
