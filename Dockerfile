# The GKE (or any container platform) alternative to the three Cloud Run
# functions: one container serving auth, messages and admin on one origin,
# routed by common/paths.py, under functions-framework's gunicorn
# (`python -m gateway serve`). No credentials inside: on GKE the pod runs as
# the claude-gateway service account through Workload Identity.
#   docker build -t REGION-docker.pkg.dev/PROJECT/claude-gateway/gateway:TAG .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8080 \
    THREADS=80

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir --disable-pip-version-check -r requirements.txt

COPY common/ common/
COPY functions/ functions/
COPY gateway/ gateway/

RUN useradd --system --uid 10001 --no-create-home gateway
USER 10001

EXPOSE 8080
CMD ["python", "-m", "gateway", "serve"]
