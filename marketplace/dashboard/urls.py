from django.urls import path

from marketplace.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.dashboard, name="index"),
    path("machines/<int:machine_id>/", views.machine, name="machine"),
]
