from django.urls import path

from jobs import api, openapi, views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/v1/openapi.json", openapi.openapi, name="api-openapi"),
    path("api/v1/jobs", api.jobs, name="api-jobs"),
    path("api/v1/jobs/<str:public_id>", api.job, name="api-job"),
    path("api/v1/jobs/<str:public_id>/events", api.job_events, name="api-job-events"),
    path("api/v1/jobs/<str:public_id>/wait", api.job_wait, name="api-job-wait"),
    path("api/v1/jobs/<str:public_id>/diff", api.job_diff, name="api-job-diff"),
    path("api/v1/jobs/<str:public_id>/reviews", api.job_reviews, name="api-job-reviews"),
    path("api/v1/jobs/<str:public_id>/merge", api.job_merge, name="api-job-merge"),
    path("api/v1/jobs/<str:public_id>/cancel", api.job_cancel, name="api-job-cancel"),
    path("api/v1/jobs/<str:public_id>/rerun", api.job_rerun, name="api-job-rerun"),
]
