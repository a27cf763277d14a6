# One image for every Sportello component; the command picks which one runs:
#   python -m sportello.edge.run <anpr|pagopa|spid|appio|gateway>   (default: gateway)
#   python -m sportello.migrate <service>                            (migration Job)
#   python -m sandbox.<twin>                                         (sandbox twins, for trials)
#   sportello <command>                                              (operator CLI)
# Linted by hadolint in tests/deploy/test_container.py. Build: docker build -t sportello:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# The citizen portal and the back-office console: static files built with the pinned npm packages
# of web/package-lock.json, served by the gateway from SPORTELLO_WEB_DIR.
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web ./
RUN npm ci --no-audit --no-fund && npm run build

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/sportello
COPY pyproject.toml requirements.lock README.md ./
COPY sportello ./sportello
COPY services ./services
COPY gateway ./gateway
COPY sandbox ./sandbox
# Exact versions: the same constraints file the test suite runs with. Every dependency has a wheel
# but psycogreen, which is pure Python: no compiler is needed.
RUN /opt/sportello/bin/pip install --no-cache-dir --prefer-binary -c requirements.lock . \
    && /opt/sportello/bin/python -m compileall -q /opt/sportello/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sportello" \
      org.opencontainers.image.description="ANPR, pagoPA, SPID/CIE and App IO for a Comune, behind one API gateway" \
      org.opencontainers.image.licenses="EUPL-1.2" \
      org.opencontainers.image.version="0.1.0"
RUN groupadd --system --gid 10001 sportello \
    && useradd --system --uid 10001 --gid sportello --no-create-home --home-dir /var/lib/sportello \
       --shell /usr/sbin/nologin sportello \
    && mkdir -p /etc/sportello/tenants /run/secrets/sportello /var/lib/sportello \
    && chown sportello:sportello /var/lib/sportello
COPY --from=build /opt/sportello /opt/sportello
COPY --from=web /web/dist /opt/sportello/web
# DL3064 is about values: these are folder paths and addresses, no secret is set here.
# hadolint ignore=DL3064
ENV PATH=/opt/sportello/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SPORTELLO_TENANTS_DIR=/etc/sportello/tenants \
    SPORTELLO_SECRETS_DIR=/run/secrets/sportello \
    SPORTELLO_DATA_DIR=/var/lib/sportello \
    SPORTELLO_GATEWAY_ADDRESS=0.0.0.0:8080 \
    SPORTELLO_METRICS_ADDRESS=0.0.0.0:9100 \
    SPORTELLO_LOG_FORMAT=json \
    SPORTELLO_WEB_DIR=/opt/sportello/web
WORKDIR /var/lib/sportello
USER 10001:10001
# 8080: the gateway's API; 9100: /metrics, /healthz, /readyz of whichever component runs
EXPOSE 8080 9100
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["sportello", "probe"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "sportello.edge.run", "gateway"]
