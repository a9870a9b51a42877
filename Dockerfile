# syntax=docker/dockerfile:1
# Build: one static-ish release binary with the client and SQL embedded.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY server ./server
COPY cli ./cli
COPY tools ./tools
COPY tests/Cargo.toml ./tests/Cargo.toml
COPY client ./client
COPY sql ./sql
COPY docs/asyncapi.json ./docs/asyncapi.json
RUN cargo build --release --locked -p ingestwatch --bin ingestwatch

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
HEALTHCHECK --interval=10s --timeout=5s CMD ["ingestwatch", "probe", "--url", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["ingestwatch"]
CMD ["serve"]
