# Image for the Prefect worker (flows + CLI). The service image comes from `bentoml containerize`.
FROM python:3.11-slim
RUN pip install --no-cache-dir "uv>=0.5"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY config config
COPY data data
COPY features features
COPY validation validation
COPY monitoring monitoring
COPY model model
COPY flows flows
COPY service service
COPY bentofile.yaml prefect.yaml ./
RUN uv sync --locked --no-dev
ENV GX_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false \
    BENTOML_DO_NOT_TRACK=true GRADIO_ANALYTICS_ENABLED=False
