# The image of every in-cluster Berth pod (server, router) and the source of the `berth`
# binary that job and deployment pods copy in. The binary is static (musl), so it runs in any
# user image, whatever its libc. uv (also static) is copied in with it when a job's conda file
# is built in its pod.
#   docker build -t <registry>/berth:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin berth

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /usr/local/bin/uv
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/berth /usr/local/bin/berth
ENTRYPOINT ["/usr/local/bin/berth"]
