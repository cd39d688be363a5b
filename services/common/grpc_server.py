"""Shared gRPC server and channel options, so every hop is configured the same way."""

from __future__ import annotations

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    # Accept the keepalive pings our own channels send (every 30 s, below). gRPC servers default to one
    # ping per 5 minutes on a connection without data: a long-lived, quiet stream (the routing table
    # watch) would collect ping strikes until the server closed the connection with GOAWAY
    # too_many_pings, failing every call in flight on it with UNAVAILABLE.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 0),
    # A peer that restarts (the control plane under `podium up`) is found again within a second, not
    # after gRPC's default backoff, which grows to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
