# Troupe node image, built FROM scratch: no base image is pulled (this machine kind has no
# registry). scripts/build-image.sh stages rootfs/ with the release binary, the shared libraries
# it links (from ldd) and the default cluster.toml, then builds with that folder as context.
FROM scratch
COPY rootfs/ /
ENV TROUPE_CONFIG=/etc/troupe/cluster.toml \
    TROUPE_DATA_DIR=/data \
    TROUPE_HTTP_LISTEN=0.0.0.0:8080 \
    TROUPE_GOSSIP_LISTEN=0.0.0.0:7946 \
    TROUPE_RPC_LISTEN=0.0.0.0:7947
EXPOSE 8080 7946/udp 7947
VOLUME ["/data"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/troupe", "health", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/troupe"]
CMD ["node"]
