# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 sfu \
    && useradd --system --uid 10001 --gid sfu --home-dir /app --shell /usr/sbin/nologin sfu

# libsrtp2 and a compiler build the compiled forwarding path (sfu/_fastpath.c); the runtime
# keeps only the shared library.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsrtp2-1 libsrtp2-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY sfu ./sfu
COPY signaling ./signaling
COPY static ./static
# An editable install: the app serves static/ from next to signaling/, so keep the source here.
RUN pip install -e . \
    && python -c "import sfu._fastpath" \
    && apt-get purge -y --auto-remove libsrtp2-dev gcc libc6-dev \
    && mkdir -p /data \
    && chown sfu:sfu /data

USER sfu
VOLUME ["/data"]
# All WebRTC media on one UDP port (publish it: -p 40000:40000/udp, and set
# SFU_RTC_ANNOUNCED_ADDRESS to the address clients reach the host at; README "Docker").
ENV SFU_RTC_PORT=40000
EXPOSE 8080 40000/udp
CMD ["sfu", "serve", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/data"]
