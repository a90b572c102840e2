FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY qcpulse qcpulse
COPY services services
COPY shared shared
COPY migrations migrations
COPY bench bench
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000
CMD ["qcpulse", "serve", "--host", "0.0.0.0", "--port", "8000"]
