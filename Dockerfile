# authgate image: build with cargo in the Rust image, run the one binary
# (dynamically linked against glibc only) in distroless as a non-root user. TLS is rustls/ring,
# so the runtime needs no OpenSSL; distroless/cc has glibc, libgcc and the CA
# bundle (/etc/ssl/certs) that https:// upstreams use.
#
#   docker build -t authgate:0.1.0 .
#
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz on the metrics
# listener (see deploy/).

FROM rust:1-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml
# or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin authgate \
 && rm -rf src

# The real sources. touch: the copied files may carry older mtimes than the
# placeholder build, and cargo must rebuild the crate itself.
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin authgate \
 && cp target/release/authgate /authgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /authgate /usr/local/bin/authgate
# Numeric, so Kubernetes' runAsNonRoot can verify it (65532 = distroless nonroot).
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["authgate"]
CMD ["serve", "--config", "/etc/authgate/config.toml"]
