from django.urls import path

from jobs import api, openapi, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("jobs/submit", views.submit, name="job-submit"),
    path("jobs/<str:public_id>/", views.job_page, name="job"),
    path("jobs/<str:public_id>/log.txt", views.job_log, name="job-log"),
    path("jobs/<str:public_id>/review/", views.review_page, name="job-review"),
    path("jobs/<str:public_id>/review/panel", views.review_panel, name="job-review-panel"),
    path("jobs/<str:public_id>/review/decide", views.review_action, name="job-review-decide"),
    path("jobs/<str:public_id>/merge", views.merge_action, name="job-merge"),
    path("jobs/<str:public_id>/cancel", views.cancel_action, name="job-cancel"),
    path("jobs/<str:public_id>/rerun", views.rerun_action, name="job-rerun"),
    path("jobs/<str:public_id>/diff/file", views.diff_file, name="job-diff-file"),
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
