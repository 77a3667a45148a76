from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from leadflow import accounts, health, monitoring


@csrf_exempt
def api_not_found(request: HttpRequest) -> JsonResponse:
    """Any other address under /api/ (a mistyped path, an id of the wrong form): a JSON 404, not the 404 page."""
    detail = f"Nothing at {request.path}: check the path and the id in it; /api/docs/ lists the endpoints."
    return JsonResponse({"detail": detail}, status=404)


urlpatterns = [
    # Operations (README: "Operating LeadFlow"): liveness, readiness, Prometheus metrics.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.ReadinessView.as_view(), name="readyz"),
    path("metrics", monitoring.metrics_view, name="metrics"),
    path("", include("leadflow.pages_urls")),
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Django's password views with our templates (templates/registration/).
    path("password/change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password/reset/", accounts.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password/reset/<uidb64>/<token>/",
        accounts.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path(settings.ADMIN_PATH, admin.site.urls),
    path("api/v1/", include("leadflow.leads.urls")),
    path("api/v1/", include("scoring.urls")),
    path("api/v1/", include("handoff.urls")),
    path("api/segment/", include("leadflow.leads.segment_urls")),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(),
        name="api-schema",
    ),
    # The split view serves its script as a file, so the Content-Security-Policy needs no inline script.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html"),
        name="api-docs",
    ),
    re_path(r"^api/", api_not_found),
]
