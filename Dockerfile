# One image for every cloudrec process: emulator, worker, beat, metrics exporter, Flower.
# No setting and no secret is baked in: compose passes them from .env at run time.
FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY config ./config
COPY contract ./contract
COPY worker ./worker
COPY tasks ./tasks
COPY emulator ./emulator
# Exactly the versions of the lock file (constraints.txt, pip-compile), Flower included.
RUN pip install -c constraints.txt . flower
RUN useradd --create-home cloudrec && mkdir -p /recordings && chown cloudrec /recordings
USER cloudrec
# 8700 emulator, 9808 metrics (Prometheus), 5555 Flower
EXPOSE 8700 9808 5555
ENTRYPOINT ["cloudrec"]
CMD ["--help"]
