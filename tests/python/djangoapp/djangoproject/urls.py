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
]
