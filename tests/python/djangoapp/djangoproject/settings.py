"""Minimal Django settings for ferricorn's integration tests (no database
unless FERRICORN_PG_HOST is set). djangoproject.wsgi and djangoproject.asgi
serve the same URLs; the async views are under /async/."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "ferricorn-tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
ROOT_URLCONF = "djangoproject.urls"
# staticfiles only for `collectstatic` (tests/python_nginx.rs): nginx serves
# the collected files, Django never does (no static view in urls.py).
INSTALLED_APPS = ["django.contrib.staticfiles"]
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = os.environ.get("FERRICORN_STATIC_ROOT") or None
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": ["django.template.context_processors.csrf"]},
    }
]
DATABASES = {}
# tests/threads_python.rs and benches/threads.sh: a PostgreSQL server on a
# Unix socket in this directory. Connections are Django's, one per thread,
# kept across requests (CONN_MAX_AGE), as a threaded deployment runs them.
if os.environ.get("FERRICORN_PG_HOST"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ["FERRICORN_PG_HOST"],
            "NAME": "postgres",
            "USER": "postgres",
            "CONN_MAX_AGE": 600,
        }
    }
USE_TZ = True
# Uploads above 64 KiB are spooled to a temporary file, not kept in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
