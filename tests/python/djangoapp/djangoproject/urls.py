from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("form/", views.form),
    path("page/", views.page),
    path("hello/", views.hello),
    path("upload/", views.upload),
    # Same view, behind conf/nginx/uploads.conf's unbuffered location.
    path("upload/stream/", views.upload),
    path("boom/", views.boom),
    path("db/", views.db),
    # Async views (djangoproject.asgi; tests/asgi_frameworks.rs, benches/asgi.sh).
    path("async/hello/", views.async_hello),
    path("async/info/", views.async_info),
    path("async/echo/", views.async_echo),
    path("async/db/", views.async_db),
]
