# The model repository as an image, for the init container of deployment.yaml: it holds the
# five backend folders (each one --model-repository) and nothing else. From the checkout root,
# after `satwatch build` and `satwatch validate`:
#
#   docker build -f deploy/k8s/repository.Dockerfile -t REGISTRY/satwatch-model-repository:TAG .
#
# repository.Dockerfile.dockerignore (read by BuildKit beside this file) keeps the event log
# and bytecode caches out. tensorrt/ holds only its README until plans are built on a GPU.
FROM busybox:1.36
COPY triton-repository/onnx /triton-repository/onnx
COPY triton-repository/tensorrt /triton-repository/tensorrt
COPY triton-repository/pytorch /triton-repository/pytorch
COPY triton-repository/python /triton-repository/python
COPY triton-repository/ensemble /triton-repository/ensemble
# The Deployment runs it as the satwatch uid; the files are world-readable.
USER 10001:10001
