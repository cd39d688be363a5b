"""gRPC adapter of the worker."""

from __future__ import annotations

from podium_api.v1 import worker_pb2, worker_pb2_grpc
from services.common import tracing
from services.common.errors import PodiumError
from services.common.request_context import MODEL_TIME_KEY, traceparent_var
from services.common.grpc_edge import abort_with, grpc_edge, metadata_token
from services.worker import metrics
from services.worker.core import Predictor
from services.worker.infer_messages import infer_arguments, infer_reply
from services.worker.prediction_stream import StreamDrain, serve_stream


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    def __init__(self, predictor: Predictor, drain: StreamDrain | None = None):
        self._predictor = predictor
        self._drain = drain or StreamDrain()   # set when the worker shuts down: its streams end

    @grpc_edge
    async def Predict(self, request, context):
        with tracing.server_span("worker.predict", traceparent_var.get()), metrics.Prediction("predict") as timed:
            result = await self._predictor.predict(metadata_token(context), request.body, request.content_type)
            if result.http_status != 200:
                timed.outcome = "model_error"
        context.set_trailing_metadata(((MODEL_TIME_KEY, f"{timed.elapsed_ms:.3f}"),))
        return worker_pb2.PredictReply(http_status=result.http_status, body=result.body,
                                       content_type=result.content_type)

    async def PredictStream(self, request_iterator, context):
        token = metadata_token(context)
        try:
            self._predictor.check_caller(token)
        except PodiumError as exc:
            await abort_with(context, exc)
        async for frame in serve_stream(self._predictor, token, request_iterator, self._drain):
            yield frame

    @grpc_edge
    async def Metadata(self, request, context):
        metadata = self._predictor.describe(metadata_token(context))
        return worker_pb2.MetadataReply(
            platform=metadata.platform,
            inputs=[worker_pb2.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs],
            outputs=[worker_pb2.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
                     for t in metadata.outputs])

    @grpc_edge
    async def Infer(self, request, context):
        inputs, outputs, params = infer_arguments(request)
        with tracing.server_span("worker.infer", traceparent_var.get()), metrics.Prediction("infer") as timed:
            answer = await self._predictor.infer(metadata_token(context), inputs, outputs, params)
        context.set_trailing_metadata(((MODEL_TIME_KEY, f"{timed.elapsed_ms:.3f}"),))
        return infer_reply(answer)
