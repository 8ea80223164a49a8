"""Django settings, built from the runtime config (runtime.config.Settings.from_env).

Web-only variables: DJANGO_SECRET_KEY (default: a key generated once into the data dir),
WEB_ALLOWED_HOSTS, WEB_CSRF_TRUSTED_ORIGINS, WEB_SECURE_COOKIES (default on; off for plain-HTTP
local runs), WEB_BEHIND_TLS_PROXY, WEB_TRUSTED_PROXIES, WEB_STATIC_ROOT, WEB_BROADCASTS_PER_DAY,
WEB_LOGIN_FAILURE_LIMIT, WEB_LOGIN_LOCKOUT_MIN, DJANGO_DEBUG.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from runtime.config import Env, Settings
from services.web.databases import django_databases

_env = Env(os.environ)
DOMOS = Settings.from_env(os.environ)
BASE_DIR = Path(__file__).resolve().parent


def _secret_key() -> str:
    configured = _env.text("DJANGO_SECRET_KEY")
    if configured:
        return configured
    # Generated once per data dir so sessions survive restarts without a key in the config.
    path = DOMOS.db.data_dir / "web" / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def _list(name: str, default: str) -> list[str]:
    return [item.strip() for item in (_env.text(name, default) or "").split(",") if item.strip()]


def _flag(name: str, default: bool) -> bool:
    return _env.choice(
        name, "true" if default else "false", ("true", "false", "1", "0", "yes", "no")
    ) in ("true", "1", "yes")


SECRET_KEY = _secret_key()
DEBUG = _flag("DJANGO_DEBUG", False)
ALLOWED_HOSTS = _list("WEB_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _list("WEB_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # django.contrib.admin with the project's titles (services.web.admin_site)
    "services.web.admin_site.DomosAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "services.web.domain",
    "axes",
]

MIDDLEWARE = [
    # First: times and counts every request, static files and redirects included.
    "services.web.metrics.RequestMetricsMiddleware",
    "services.web.metrics.MetricsEndpointMiddleware",
    # A NUL in the path, query string, cookies or headers: refused before any view (400, or an
    # admin list's ?e=1); first among the middleware that act before the view.
    "services.web.nul_guard.NulGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns its lockout into the 429 answer.
    "axes.middleware.AxesMiddleware",
]

# Login throttling (django-axes): a (username, client address) pair that fails
# WEB_LOGIN_FAILURE_LIMIT times is locked out for WEB_LOGIN_LOCKOUT_MIN minutes (HTTP 429);
# a success clears its count. The address is REMOTE_ADDR, or behind the TLS proxy the
# X-Forwarded-For entry a trusted proxy vouches for (services.web.client_address): a client
# cannot rotate the header to escape the lockout, nor lock out everyone behind the proxy.
BEHIND_TLS_PROXY = _flag("WEB_BEHIND_TLS_PROXY", False)
#: Peers whose X-Forwarded-For names the client; none unless behind the proxy. The default is
#: Docker's private ranges, where the bridge gateway a host proxy's requests arrive from lies.
WEB_TRUSTED_PROXIES = (
    _env.networks("WEB_TRUSTED_PROXIES", "172.16.0.0/12,192.168.0.0/16") if BEHIND_TLS_PROXY else ()
)
AXES_CLIENT_IP_CALLABLE = "services.web.client_address.axes_client_ip"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _env.integer("WEB_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=_env.number("WEB_LOGIN_LOCKOUT_MIN", 15.0, minimum=1.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Each failure also as its own row (address, user agent, time), for an audit in the admin.
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# Masked in the form data axes stores of an attempt (the password always is): a live CSRF token
# in a table staff can read is a credential for the session it belongs to.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]

ROOT_URLCONF = "services.web.urls"
WSGI_APPLICATION = "services.web.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = django_databases(DOMOS.db)
DATABASE_ROUTERS = ["services.web.router.DomainRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "ru"
TIME_ZONE = DOMOS.timezone.key
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(_env.text("WEB_STATIC_ROOT") or DOMOS.db.data_dir / "web" / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "overview"

# Cookies only over HTTPS unless switched off for a plain-HTTP local run.
SECURE_COOKIES = _flag("WEB_SECURE_COOKIES", True)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# A money admin's login lasts a working day, not Django's two weeks: a session left open on a
# shared or stolen machine expires by the next morning.
SESSION_COOKIE_AGE = 10 * 60 * 60
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Logging is runtime.logging's (JSON through structlog), configured by `domos web`.
LOGGING_CONFIG = None

#: Where monitors write their health files (runtime.monitor.health).
DOMOS_RUN_DIR = Path(_env.text("DOMOS_RUN_DIR", "var/run") or "var/run")

#: Broadcasts staff may send to the members per day (services.web.domain.broadcasts); 0 turns
#: them off. Each one reaches every active member: a typo should not be repeatable at will.
BROADCASTS_PER_DAY = _env.integer("WEB_BROADCASTS_PER_DAY", 3, maximum=100)
