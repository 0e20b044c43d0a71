"""The Open Inference Protocol over gRPC: Triton's `inference.GRPCInferenceService` (the KServe
V2 service plus Triton's repository RPCs), served by grpcio in the service's own event loop, so
that it shares the HTTP side's repository, batchers and limits.

The service definitions are not written here: they are the protobuf/grpc stubs that NVIDIA's
`tritonclient[grpc]` package ships (`tritonclient.grpc.service_pb2`, `service_pb2_grpc`,
BSD-3-Clause), generated from Triton's published `grpc_service.proto`; so our wire format is
exactly the one tritonclient speaks. Errors map to gRPC status codes in `STATUS_CODES`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from app.api_keys import key_is_valid
from app.errors import ApiError, InvalidRequest, PayloadTooLarge, Timeout, Unauthorized
from app.metrics import Metrics
from app.oip.inference import infer
from app.oip.metadata import model_metadata, server_metadata
from app.oip.tensors import (
    BYTES,
    FP32,
    InferRequest,
    InferResponse,
    OutputRequest,
    Tensor,
    bytes_elements,
    element_count,
    fp32_from_bytes,
    raw_contents,
)
from app.repository import ModelRepository
from app.settings import Settings

log = logging.getLogger(__name__)

# Our HTTP statuses -> gRPC status codes.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# Like /healthz and /readyz, these answer without an API key.
OPEN_RPCS = frozenset({"ServerLive", "ServerReady", "ServerMetadata"})

Request = TypeVar("Request")
Reply = TypeVar("Reply")
Method = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Reply]]


def rpc(method: Method[Request, Reply]) -> Method[Request, Reply]:
    """Checks the API key (`authorization` metadata, as HTTP's header), counts and times the
    call, and turns our errors into the status code they map to."""

    @functools.wraps(method)
    async def handler(
        self: InferenceService, request: Request, context: grpc.aio.ServicerContext
    ) -> Reply:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if method.__name__ not in OPEN_RPCS:
                self.authorize(context)
            return await method(self, request, context)
        except ApiError as exc:
            code = STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL)
            if exc.reason is not None:
                self.metrics.rejected.labels(exc.reason).inc()
            await context.abort(code, exc.message)
            raise  # abort raises; this line is for the type checker
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            self.metrics.rejected.labels("client_gone").inc()
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            code = grpc.StatusCode.INTERNAL
            log.exception("unexpected error in %s", method.__name__)
            await context.abort(code, "internal server error")
            raise
        finally:
            name = method.__name__
            self.metrics.requests.labels(name, code.name, "grpc").inc()
            duration = time.perf_counter() - started
            self.metrics.request_duration.labels(name, "grpc").observe(duration)

    return handler


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The RPCs vitserve implements; the others answer UNIMPLEMENTED (grpcio's default)."""

    def __init__(self, repository: ModelRepository, settings: Settings, metrics: Metrics) -> None:
        self.repository = repository
        self.settings = settings
        self.metrics = metrics

    def authorize(self, context: grpc.aio.ServicerContext) -> None:
        """UNAUTHENTICATED unless API keys are off or the call carries `authorization:
        Bearer <a key>`."""
        keys = self.settings.api_key_set
        if not keys:
            return
        sent = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
        value = sent[0] if sent else None
        if not key_is_valid(value if isinstance(value, str) else None, keys):
            raise Unauthorized()

    @rpc
    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @rpc
    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.repository.ready)

    @rpc
    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:
        try:
            runtime = self.repository.runtime(request.name, request.version or None)
        except ApiError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=runtime.ready)

    @rpc
    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**server_metadata())

    @rpc
    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        runtime = self.repository.runtime(request.name, request.version or None)
        versions = [r.version for r in self.repository.served().get(request.name, [])]
        meta = model_metadata(runtime, versions)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**spec) for spec in meta["inputs"]],
            outputs=[tensor(**spec) for spec in meta["outputs"]],
        )

    @rpc
    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:
        size, limit = request.ByteSize(), self.settings.max_upload_bytes
        if size > limit:  # grpcio's own limit (with room for the envelope) refuses bigger ones
            raise PayloadTooLarge(f"the request is {size} bytes (limit {limit})")
        timeout = self.settings.request_timeout_s
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, remaining)
        try:
            answer = await asyncio.wait_for(infer(self.repository, decode(request)), timeout)
        except TimeoutError:
            raise Timeout("the request was not answered within the request timeout") from None
        return encode(answer)

    @rpc
    async def RepositoryIndex(self, request: Any, context: Any) -> pb.RepositoryIndexResponse:
        index = pb.RepositoryIndexResponse.ModelIndex
        rows = [
            index(name=row.name, version=row.version, state=row.state, reason=row.reason)
            for row in self.repository.index()
            if not request.ready or row.state == "READY"
        ]
        return pb.RepositoryIndexResponse(models=rows)

    @rpc
    async def RepositoryModelLoad(
        self, request: Any, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        await self.repository.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @rpc
    async def RepositoryModelUnload(
        self, request: Any, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        await self.repository.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def decode(request: Any) -> InferRequest:
    """ModelInferRequest -> the core's request (`raw_input_contents`, or typed `contents`)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs: list[Tensor] = []
    for index, spec in enumerate(request.inputs):
        name, datatype, shape = spec.name, spec.datatype, [int(dim) for dim in spec.shape]
        element_count(shape)
        data: np.ndarray | list[bytes]
        if datatype == FP32:
            if raw:
                data = fp32_from_bytes(name, shape, raw[index])
            else:
                data = fp32_from_bytes(
                    name, shape, np.asarray(spec.contents.fp32_contents, "<f4").tobytes()
                )
        elif datatype == BYTES:
            if raw:
                data = bytes_elements(name, shape, raw[index])
            else:
                data = list(spec.contents.bytes_contents)
                if len(data) != element_count(shape):
                    raise InvalidRequest(f"input {name!r}: {len(data)} elements for {shape}")
        else:
            raise InvalidRequest(f"input {name!r}: datatype {datatype} is not served")
        inputs.append(Tensor(name, datatype, shape, data))
    outputs = []
    for spec in request.outputs:
        classification = 0
        if "classification" in spec.parameters:
            classification = int(spec.parameters["classification"].int64_param)
        outputs.append(OutputRequest(spec.name, classification))
    version = request.model_version or None
    return InferRequest(request.model_name, version, inputs, outputs, request.id)


def encode(answer: InferResponse) -> pb.ModelInferResponse:
    """The core's answer -> ModelInferResponse, every output in `raw_output_contents`."""
    tensor = pb.ModelInferResponse.InferOutputTensor
    return pb.ModelInferResponse(
        model_name=answer.model_name,
        model_version=answer.model_version,
        id=answer.id,
        outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in answer.outputs],
        raw_output_contents=[raw_contents(t) for t in answer.outputs],
    )


async def start_grpc_server(
    repository: ModelRepository, settings: Settings, metrics: Metrics
) -> grpc.aio.Server | None:
    """Serve gRPC on VITSERVE_HOST:VITSERVE_GRPC_PORT (None when the port is 0)."""
    if settings.grpc_port == 0:
        return None
    server = grpc.aio.server(
        options=[
            # A bigger message is refused with RESOURCE_EXHAUSTED before it is read whole.
            ("grpc.max_receive_message_length", settings.max_upload_bytes + 64 * 1024),
            ("grpc.max_send_message_length", -1),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceService(repository, settings, metrics), server
    )
    address = f"{settings.host}:{settings.grpc_port}"
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"cannot listen for gRPC on {address}")
    await server.start()
    log.info("gRPC (Open Inference Protocol) on %s", address)
    return server
