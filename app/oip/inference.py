"""One inference request through the shared core: check it, find the version it names, admit
its images, run them through that version's batcher, and build the outputs it asked for."""

from __future__ import annotations

import numpy as np

from app.errors import InvalidRequest
from app.model_config import ATTENTION, INPUT_NAME, LOGITS
from app.oip.metadata import CLASS_OUTPUTS, IMAGE, OUTPUTS, PROBABILITIES
from app.oip.tensors import BYTES, FP32, InferRequest, InferResponse, OutputRequest, Tensor
from app.postprocess import softmax
from app.repository import ModelRepository
from app.runtime import Inference, ModelRuntime


async def infer(repository: ModelRepository, request: InferRequest) -> InferResponse:
    tensor = _the_input(request.inputs)
    wanted = _checked_outputs(request.outputs)
    count = tensor.shape[0]
    # Chosen and admitted in one step (no await between): a swap is seen whole.
    runtime = repository.runtime(request.model_name, request.model_version)
    with runtime.reserve(count) as permit:
        if isinstance(tensor.data, list):  # image: BYTES
            inference = await runtime.infer_images(permit, tensor.data)
        else:  # pixel_values: FP32
            inference = await runtime.infer_pixels(permit, tensor.data)
    return InferResponse(
        model_name=runtime.name,
        model_version=runtime.version,
        outputs=[_output(runtime, inference, output) for output in wanted],
        id=request.id,
    )


def _the_input(inputs: list[Tensor]) -> Tensor:
    """Exactly one input: `image` (BYTES [N]) or `pixel_values` (FP32 [N, 3, H, W])."""
    if len(inputs) != 1:
        raise InvalidRequest(
            f"give exactly one input, {IMAGE!r} or {INPUT_NAME!r}; got {len(inputs)}"
        )
    tensor = inputs[0]
    expected = {IMAGE: (BYTES, 1), INPUT_NAME: (FP32, 4)}.get(tensor.name)
    if expected is None:
        raise InvalidRequest(f"unknown input {tensor.name!r}: use {IMAGE!r} or {INPUT_NAME!r}")
    datatype, rank = expected
    if tensor.datatype != datatype:
        raise InvalidRequest(f"input {tensor.name!r} is {datatype}, not {tensor.datatype}")
    if len(tensor.shape) != rank or tensor.shape[0] < 1:
        raise InvalidRequest(
            f"input {tensor.name!r} needs {rank} dimension(s) with at least one image; "
            f"got shape {tensor.shape}"
        )
    return tensor


def _checked_outputs(requested: list[OutputRequest]) -> list[OutputRequest]:
    if not requested:
        return [OutputRequest(name) for name in OUTPUTS]
    for output in requested:
        if output.name not in OUTPUTS:
            raise InvalidRequest(f"unknown output {output.name!r}: outputs are {list(OUTPUTS)}")
        if output.classification < 0:
            raise InvalidRequest("classification must be a positive number of classes")
        if output.classification and output.name not in CLASS_OUTPUTS:
            raise InvalidRequest(
                f"classification applies to {' and '.join(CLASS_OUTPUTS)}, not {output.name!r}"
            )
    return requested


def _output(runtime: ModelRuntime, inference: Inference, output: OutputRequest) -> Tensor:
    values = {
        PROBABILITIES: lambda: softmax(inference.logits).astype(np.float32),
        LOGITS: lambda: inference.logits.astype(np.float32),
        ATTENTION: lambda: inference.attention.astype(np.float32),
    }[output.name]()
    if output.classification:
        return classification(output.name, values, runtime.config.labels, output.classification)
    return Tensor(output.name, FP32, list(values.shape), values)


def classification(name: str, values: np.ndarray, labels: list[str], k: int) -> Tensor:
    """Triton's classification extension: per image the top k as "value:index:label", value
    being the output's own element (a probability, or a logit), highest first."""
    k = min(k, values.shape[1])
    rows: list[bytes] = []
    for row in values:
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        rows += [f"{row[i]:f}:{i}:{labels[i]}".encode() for i in order]
    return Tensor(name, BYTES, [len(values), k], rows)
