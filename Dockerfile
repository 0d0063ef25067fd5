# The mobstream image: one image, every service (`mobstream worker|replay|dashboard|generate|train ...`).
# Mirrors scripts/setup.sh: CPU torch 2.13.0 first, from PyTorch's CPU index, so that `pip install .`
# finds torch already satisfied and no resolver step can pull a multi-GB CUDA build.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Like scripts/setup.sh's fallback (it has no local wheel here): the +cpu local version leaves the
# resolver no choice, and pip is not upgraded (a newer pip once resolved torch to the CUDA build).
RUN pip install "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu \
      --extra-index-url https://pypi.org/simple \
 && python -c "import torch,sys; v=torch.__version__; sys.exit(0 if v.startswith('2.13.0') and not torch.version.cuda else f'expected CPU torch 2.13.0, got {v} cuda={torch.version.cuda}')"

WORKDIR /opt/mobstream
# Dependencies change less often than code, but pyproject.toml names the packages, so both are needed
# for `pip install .`; the torch layer above is the big one and stays cached.
COPY pyproject.toml README.md ./
COPY mobstream ./mobstream
COPY models ./models
COPY stream ./stream
COPY training ./training
COPY dashboard ./dashboard
RUN pip install . \
 && python -c "import torch,sys; sys.exit(0 if torch.__version__.startswith('2.13.0') and not torch.version.cuda else 'an install step replaced torch: ' + torch.__version__)" \
 && mobstream --help >/dev/null

# Non-root; the three paths every command uses are volumes in docker-compose.yml.
RUN groupadd --system --gid 10001 mobstream \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/mobstream mobstream \
 && mkdir -p /data /runs /state \
 && chown mobstream:mobstream /data /runs /state
# Numeric, so a runtime's runAsNonRoot check can verify it.
USER 10001:10001
WORKDIR /home/mobstream
ENV MOBSTREAM_DATA_DIR=/data \
    MOBSTREAM_RUNS_DIR=/runs \
    MOBSTREAM_STATE_DIR=/state \
    MOBSTREAM_METRICS_PORT=9108 \
    MOBSTREAM_WEB_PORT=6066
VOLUME ["/data", "/runs", "/state"]
EXPOSE 9108 6066 8501

# The worker is the long-running service: healthy while its /metrics answers. One-shot jobs
# (replay, generate, train) and the dashboard override or disable it in docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('MOBSTREAM_METRICS_PORT', '9108'), timeout=4)"]

ENTRYPOINT ["mobstream"]
CMD ["--help"]
