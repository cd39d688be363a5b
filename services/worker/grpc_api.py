"""gRPC adapter of the worker: PredictStream (services/worker/prediction_stream.py), PredictEvents (a generative
model's stream, services/worker/generative.py) and Metadata."""

from __future__ import annotations

from podium_api.v1 import worker_pb2, worker_pb2_grpc
from services.common import tracing
from services.common.errors import PodiumError
from services.common.request_context import choose_request_id, request_id_var
from services.common.grpc_edge import abort_with, grpc_edge, metadata_token
from services.worker.core import Predictor
from services.worker.prediction_stream import StreamDrain, serve_stream


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    def __init__(self, predictor: Predictor, drain: StreamDrain | None = None):
        self._predictor = predictor
        self._drain = drain or StreamDrain()   # set when the worker shuts down: its streams end

    async def PredictStream(self, request_iterator, context):
        token = metadata_token(context)
        try:
            self._predictor.check_caller(token)
        except PodiumError as exc:
            await abort_with(context, exc)
        async for frame in serve_stream(self._predictor, token, request_iterator, self._drain):
            yield frame

    async def PredictEvents(self, request, context):
        request_id_var.set(choose_request_id(request.request_id))   # this call's own task: nothing to reset
        events = self._predictor.predict_events(metadata_token(context), request.body, request.content_type)
        try:
            with tracing.server_span("worker.predict_events", request.traceparent):
                async for event in events:
                    yield worker_pb2.PredictEvent(data=event.data, http_status=event.http_status)
        except PodiumError as exc:
            await abort_with(context, exc)
        finally:
            await events.aclose()   # the router left: the model stops at its next yield

    @grpc_edge
    async def Metadata(self, request, context):
        metadata = self._predictor.describe(metadata_token(context))
        return worker_pb2.MetadataReply(
            platform=metadata.platform,
            inputs=[worker_pb2.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs],
            outputs=[worker_pb2.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
                     for t in metadata.outputs],
            task=self._predictor.task, is_streaming=self._predictor.is_streaming)
