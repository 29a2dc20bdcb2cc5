# DM Studio: one image for the dashboard (`dm up --no-workers`) and the workers (`dm worker`).
#
#   GPU (default):  docker build -t dm-studio .
#   CPU only:       docker build -t dm-studio:cpu \
#                     --build-arg BASE_IMAGE=python:3.11-slim \
#                     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#
# The default base ships CUDA, cuDNN, torch and torchvision (Python 3.11), so nothing large is
# downloaded again. On python:3.11-slim, torch comes from PyPI (a CUDA build, ~2 GB) unless
# TORCH_INDEX_URL points at PyTorch's CPU wheels as above.
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/dm-studio

# Dependencies first (from pyproject.toml alone: the engine's, the studio's and psycopg), so
# editing the code does not reinstall them.
COPY pyproject.toml ./
RUN set -eux; \
    if [ -n "$TORCH_INDEX_URL" ]; then \
        python -m pip install --index-url "$TORCH_INDEX_URL" "torch>=2.2,<=2.14.1" "torchvision>=0.17,<=0.29.1"; \
    fi; \
    python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = p['optional-dependencies']; \
print('\n'.join(p['dependencies'] + extras['studio'] + extras['postgres']))" > /tmp/requirements.txt; \
    python -m pip install -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt

# The project itself, with the studio extra (store, workers, dm, dashboard) and the postgres extra
# (psycopg) for DM_DATABASE_URL=postgresql+psycopg://...
COPY README.md ./
COPY dm_core ./dm_core
COPY dm_store ./dm_store
COPY workers ./workers
COPY app ./app
COPY studio ./studio
COPY configs ./configs
COPY studies ./studies
RUN python -m pip install ".[studio,postgres]" && dm --version

# An unprivileged user owns /data: the default SQLite file and the shared artifacts
# (checkpoints). Mount volumes there: -v dm-data:/data (compose mounts /data/artifacts).
RUN set -eux; \
    useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin dm; \
    mkdir -p /data/var /data/artifacts /data/data; \
    chown -R dm:dm /data
# Datasets are read only from DM_DATA_DIRS (mount them at /data/data: compose does).
# The image has no C++ compiler: the losses' fused CPU kernel (dm_core/fused_cpu.py) is off,
# quietly. CPU workers here run the tensor-op losses; GPU workers are unaffected.
ENV DM_FUSED_CPU=0 \
    DM_DATABASE_URL=sqlite:////data/var/dm.sqlite \
    DM_ARTIFACTS=/data/artifacts \
    DM_CONFIGS=/opt/dm-studio/configs \
    DM_DATA_DIRS=/data/data
USER dm
WORKDIR /data

EXPOSE 8501
ENTRYPOINT ["dm"]
# Inside a container the dashboard must bind 0.0.0.0 to be reachable through a published port;
# publish it on 127.0.0.1 (docker run -p 127.0.0.1:8501:8501) or set DM_PASSWORD.
CMD ["up", "--host", "0.0.0.0"]
