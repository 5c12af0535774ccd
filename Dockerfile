# facestream with the GPU extras (TensorRT + pycuda) on CUDA; models are mounted at /app/checkpoints.
FROM nvcr.io/nvidia/tensorrt:25.10-py3
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY app app
COPY engines engines
RUN pip install --no-cache-dir -e '.[torch,gpu]'
CMD ["facestream", "run", "--headless"]
