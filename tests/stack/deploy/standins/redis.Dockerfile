ARG BASE_IMAGE=podium-base:bookworm
FROM ${BASE_IMAGE}
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
