# The production image: NVIDIA's Triton (24.10 = Triton 2.51, the server version the embedded
# path runs) plus what the repository's Python models import. The native onnxruntime,
# tensorrt and pytorch backends of the image serve those models; satwatch's Python-based
# backends are only for the embedded CPU server.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

WORKDIR /opt/satwatch
COPY pyproject.toml README.md ./
COPY src ./src
# --no-deps: the image's backends serve the detectors, so no torch/onnxruntime wheels here;
# the Python models need only numpy, scipy, tritonclient's config schema with protobuf
# (custom_logic reads postprocessing's config.pbtxt; the client of the image's Triton release)
# and the satwatch package itself (tests/unit/server/test_compose.py follows their imports).
RUN pip install --no-cache-dir "numpy<2" "scipy>=1.11" "pyyaml>=6" "tritonclient[grpc]==2.51.0" protobuf \
    && pip install --no-cache-dir --no-deps . \
    && python3 -c "import satwatch.repository.stages, numpy, scipy"

# Triton and the Python models run as an unprivileged user, not root: what is above was
# installed as root, so that user can read it but not change it. The uid/gid is fixed so that a
# host folder mounted for files the models write can be given to it (chown 10001).
# /var/lib/satwatch holds custom_logic's event log (a volume in docker-compose.yml): a new named
# volume takes the owner of the folder it is mounted over.
ARG SATWATCH_UID=10001
RUN groupadd --gid "${SATWATCH_UID}" satwatch \
    && useradd --uid "${SATWATCH_UID}" --gid satwatch --create-home \
       --home-dir /home/satwatch --shell /usr/sbin/nologin satwatch
RUN install -d -o satwatch -g satwatch /var/lib/satwatch

EXPOSE 8000 8001 8002
# The model repository is mounted read-only here (docker-compose.yml).
WORKDIR /models
USER satwatch
