# CPU image: the package, its tests and the demo. (A TensorRT/GPU image comes with the plugin.)
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make install
CMD ["make", "demo"]
