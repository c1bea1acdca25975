# syntax=docker/dockerfile:1
# Multi-stage: build with the Rust toolchain, run on Debian slim.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Build dependencies first so that source edits reuse the cached layer.
COPY Cargo.toml Cargo.lock ./
COPY load-tests/Cargo.toml load-tests/Cargo.toml
RUN mkdir -p src load-tests/src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > load-tests/src/main.rs \
    && cargo build --release --bin mailroom || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --bin mailroom

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/mailroom --create-home mailroom
COPY --from=build /src/target/release/mailroom /usr/local/bin/mailroom
USER mailroom
WORKDIR /var/lib/mailroom
ENV MAILROOM__HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
# SIGTERM makes mailroom close sockets, drain and exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mailroom"]
CMD ["serve"]
