# LeadFlow image: one image for the web server (gunicorn), the Celery worker and beat.
#   docker-compose up --build        (see docker-compose.yml and the README)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
# psycopg2-binary ships manylinux wheels, so no compiler or libpq headers are needed.
# `pip check` fails the build on a missing or conflicting dependency; `make test` builds
# the same runtime-only set (.venv-runtime) and runs the web, the worker and beat from it.
COPY requirements.txt .
RUN pip install -r requirements.txt && pip check

COPY . .

# collectstatic needs settings to load, and settings refuse to load without a
# SECRET_KEY when DEBUG=0. This placeholder exists for this one command only: it
# is not set in the image's environment, and it signs nothing (the real key comes
# from the environment at run time).
ARG COLLECTSTATIC_SECRET_KEY=collectstatic-build-step-only-not-a-secret
RUN SECRET_KEY="$COLLECTSTATIC_SECRET_KEY" python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin leadflow

# Code and static files stay owned by root (read-only to the app); the app runs unprivileged.
USER leadflow

EXPOSE 8000
# gunicorn also reads /app/gunicorn.conf.py: its workers keep their database connections.
ENTRYPOINT ["sh", "/app/scripts/docker-entrypoint.sh"]
CMD ["gunicorn", "leadflow.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
