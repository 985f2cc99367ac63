from django.urls import include, path

from jobs import api, review_queue, tokens, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("jobs/submit", views.submit, name="job-submit"),
    path("jobs/<str:public_id>/", views.job_page, name="job"),
    path("jobs/<str:public_id>/actions", views.job_actions, name="job-actions"),
    path("jobs/<str:public_id>/log.txt", views.job_log, name="job-log"),
    path("jobs/<str:public_id>/review/", views.review_page, name="job-review"),
    path("jobs/<str:public_id>/review/panel", views.review_panel, name="job-review-panel"),
    path("jobs/<str:public_id>/review/decide", views.review_action, name="job-review-decide"),
    path("jobs/<str:public_id>/merge", views.merge_action, name="job-merge"),
    path("jobs/<str:public_id>/cancel", views.cancel_action, name="job-cancel"),
    path("jobs/<str:public_id>/rerun", views.rerun_action, name="job-rerun"),
    path(
        "jobs/<str:public_id>/attempts/<int:number>/reproduce",
        views.reproduce_action,
        name="job-reproduce",
    ),
    path("jobs/<str:public_id>/push", views.push_action, name="job-push"),
    path("jobs/<str:public_id>/diff/file", views.diff_file, name="job-diff-file"),
    path("review-waiting", review_queue.badge, name="review-waiting"),
    path("settings/tokens/", tokens.page, name="tokens"),
    path("settings/tokens/<int:token_id>/revoke", tokens.revoke_view, name="token-revoke"),
    # Without ninja's URL namespace, so that the API's names (api-job, …) are plain ones.
    path("api/v1/", include(api.api.urls[0])),
]
