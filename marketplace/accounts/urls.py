from django.urls import path

from marketplace.accounts import apis

urlpatterns = [
    path("auth/signup", apis.SignupApi.as_view(), name="auth-signup"),
    path("auth/tokens", apis.TokenCreateApi.as_view(), name="auth-token-create"),
    path("auth/tokens/current", apis.CurrentTokenApi.as_view(), name="auth-token-current"),
    path("auth/me", apis.MeApi.as_view(), name="auth-me"),
]
