# syntax=docker/dockerfile:1
# Build: docker build -t dingbind:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY build ./build
COPY src ./src
COPY crds ./crds
COPY benches ./benches
RUN cargo build --release --locked --bin dingbind

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/dingbind /usr/local/bin/dingbind
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dingbind"]
CMD ["controller"]
