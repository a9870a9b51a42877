# syntax=docker/dockerfile:1
# Build: one static-ish release binary with the client and SQL embedded.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY server ./server
COPY client ./client
COPY sql ./sql
COPY docs/asyncapi.json ./docs/asyncapi.json
RUN cargo build --release --locked --bin ingestwatch

# Run: a small Debian base, non-root, PostgreSQL binaries only for `demo`.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home ingestwatch
COPY --from=build /src/target/release/ingestwatch /usr/local/bin/ingestwatch
USER 10001
ENV INGESTWATCH_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD ["ingestwatch", "--version"]
ENTRYPOINT ["ingestwatch"]
CMD ["serve"]
