# syntax=docker/dockerfile:1
# One image for every Sunlight process; the command picks which (see docker-compose.yml):
#   docker run --rm sunlight:0.1.0 db migrate | ingest | api | simulate | registry load FILE
FROM python:3.12.8-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject.toml alone, so a code change does not reinstall them.
# Every dependency ships manylinux wheels, so no compiler is needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The application, and examples/ (compose loads /app/examples/registry.yaml).
COPY . .
# /auth belongs to the service user: compose mounts the empty mqtt-auth volume there, Docker
# gives a new volume the owner of the image's directory, and broker-auth (uid 10001) writes
# the broker's accounts into it (a root-owned mount point would refuse it).
RUN pip install --no-deps . \
 && rm -rf build *.egg-info \
 && useradd --system --uid 10001 --user-group --create-home sunlight \
 && install -d -o sunlight -g sunlight -m 0755 /auth

USER sunlight
EXPOSE 8000
ENTRYPOINT ["sunlight"]
CMD ["--help"]
