FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sequencer ./sequencer
COPY workers ./workers
COPY templates ./templates
RUN pip install --no-cache-dir -e . && useradd --create-home refseq
USER refseq
CMD ["refseq", "--help"]
