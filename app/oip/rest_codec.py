"""The REST encoding: a JSON inference header, optionally followed by binary tensor data (the
binary tensor data extension, as tritonclient speaks it).

Request: `Inference-Header-Content-Length: N` says the first N bytes are the JSON header; each
input with `parameters.binary_data_size` takes that many of the bytes after it, in order. JSON
`data` is a (flat or nested) list: numbers for FP32; for BYTES, each element the
base64-encoded file (JSON cannot carry raw bytes). Response: an output is binary when its
request says `binary_data: true`, or, when no outputs are named, when the request-level
`binary_data_output` is true; the header then gives the JSON's length, the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from app.errors import InvalidRequest
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

HEADER_LENGTH = "inference-header-content-length"


def decode_request(
    body: bytes, header_length: str | None, model_name: str, model_version: str | None
) -> tuple[InferRequest, dict[str, bool]]:
    """The request, and for each output (None: all) whether it is wanted in binary."""
    if header_length is not None:
        try:
            json_size = int(header_length)
        except ValueError:
            raise InvalidRequest("Inference-Header-Content-Length is not a number") from None
        if not 0 < json_size <= len(body):
            raise InvalidRequest(
                f"Inference-Header-Content-Length {json_size} is outside the body "
                f"({len(body)} bytes)"
            )
    else:
        json_size = len(body)
    try:
        header = json.loads(body[:json_size])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the inference header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidRequest("the inference request needs an 'inputs' list")
    binary = memoryview(body)[json_size:]
    inputs: list[Tensor] = []
    for spec in header["inputs"]:
        tensor, used = _decode_input(spec, binary)
        binary = binary[used:]
        inputs.append(tensor)
    if len(binary):
        raise InvalidRequest(f"{len(binary)} bytes of binary data belong to no input")
    parameters = _dict(header.get("parameters"), "parameters")
    default_binary = bool(parameters.get("binary_data_output", False))
    outputs: list[OutputRequest] = []
    binary_outputs: dict[str, bool] = {}
    for spec in _list(header.get("outputs"), "outputs"):
        spec = _dict(spec, "an output")
        name = spec.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("every output needs a 'name'")
        output_parameters = _dict(spec.get("parameters"), f"output {name!r} parameters")
        classification = output_parameters.get("classification", 0)
        if not isinstance(classification, int) or isinstance(classification, bool):
            raise InvalidRequest(f"output {name!r}: classification must be an integer")
        outputs.append(OutputRequest(name, classification))
        binary_outputs[name] = bool(output_parameters.get("binary_data", default_binary))
    request_id = header.get("id", "")
    request = InferRequest(
        model_name, model_version, inputs, outputs, str(request_id) if request_id else ""
    )
    if not outputs:
        binary_outputs = {"": default_binary}  # every output alike
    return request, binary_outputs


def _decode_input(spec: Any, binary: memoryview) -> tuple[Tensor, int]:
    """One input tensor, and how many of the binary bytes it took."""
    spec = _dict(spec, "an input")
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise InvalidRequest("every input needs a 'name' and a 'datatype'")
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) for dim in shape
    ):
        raise InvalidRequest(f"input {name!r}: 'shape' must be a list of integers")
    if datatype not in (FP32, BYTES):
        raise InvalidRequest(f"input {name!r}: datatype {datatype} is not served (FP32, BYTES)")
    element_count(shape)  # refuses negative dimensions
    size = _dict(spec.get("parameters"), f"input {name!r} parameters").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise InvalidRequest(f"input {name!r}: binary_data_size {size!r} is out of range")
        raw = bytes(binary[:size])
        data = (
            fp32_from_bytes(name, shape, raw)
            if datatype == FP32
            else bytes_elements(name, shape, raw)
        )
        return Tensor(name, datatype, shape, data), size
    if "data" not in spec:
        raise InvalidRequest(f"input {name!r} has neither 'data' nor binary_data_size")
    return Tensor(name, datatype, shape, _json_data(name, datatype, shape, spec["data"])), 0


def _json_data(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray | list[bytes]:
    if datatype == FP32:
        try:
            values = np.asarray(data, dtype=np.float32).ravel()
        except (ValueError, TypeError):
            raise InvalidRequest(f"input {name!r}: FP32 data must be numbers") from None
        if values.size != element_count(shape):
            raise InvalidRequest(
                f"input {name!r}: shape {shape} needs {element_count(shape)} numbers, "
                f"got {values.size}"
            )
        return values.reshape(shape)
    elements = list(_flatten(data))
    if len(elements) != element_count(shape):
        raise InvalidRequest(
            f"input {name!r}: shape {shape} needs {element_count(shape)} elements, "
            f"got {len(elements)}"
        )
    decoded = []
    for element in elements:
        if not isinstance(element, str):
            raise InvalidRequest(f"input {name!r}: each BYTES element is a base64 string")
        try:
            decoded.append(base64.b64decode(element, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"input {name!r}: an element is not valid base64") from None
    return decoded


def _flatten(data: Any) -> Any:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{what} must be a JSON list")
    return value


def encode_response(
    response: InferResponse, binary_outputs: dict[str, bool]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (Inference-Header-Content-Length when binary)."""
    blobs: list[bytes] = []
    outputs = []
    for tensor in response.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if binary_outputs.get(tensor.name, binary_outputs.get("", False)):
            blob = raw_contents(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif isinstance(tensor.data, np.ndarray):
            entry["data"] = tensor.data.ravel().tolist()
        else:
            entry["data"] = [element.decode("utf-8", "replace") for element in tensor.data]
        outputs.append(entry)
    header: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id:
        header["id"] = response.id
    text = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return text, {"content-type": "application/json"}
    return b"".join([text, *blobs]), {
        "content-type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(text)),
    }
