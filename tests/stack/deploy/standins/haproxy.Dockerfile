ARG BASE_IMAGE=podium-base:bookworm
FROM ${BASE_IMAGE}
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
