"""The protocol's tensors, neutral of their encoding, and the BYTES element format both
encodings share (binary: each element a 4-byte little-endian length, then its bytes)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from app.errors import InvalidRequest

FP32 = "FP32"
BYTES = "BYTES"

TensorData = np.ndarray | list[bytes]  # FP32: an array of the tensor's shape; BYTES: elements


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: TensorData


@dataclass
class OutputRequest:
    name: str
    classification: int = 0  # > 0: the top-k classes as "value:index:label" strings


@dataclass
class InferRequest:
    model_name: str
    model_version: str | None
    inputs: list[Tensor]
    outputs: list[OutputRequest]  # empty: every output
    id: str = ""


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str = ""
    parameters: dict[str, object] = field(default_factory=dict)


def element_count(shape: list[int]) -> int:
    if any(dim < 0 for dim in shape):
        raise InvalidRequest(f"shape {shape} has a negative dimension")
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def fp32_from_bytes(name: str, shape: list[int], raw: bytes) -> np.ndarray:
    """Little-endian float32 elements, in row-major order, of `shape`."""
    count = element_count(shape)
    if len(raw) != 4 * count:
        raise InvalidRequest(
            f"input {name!r}: shape {shape} needs {4 * count} bytes of FP32, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32, copy=False).reshape(shape)


def bytes_elements(name: str, shape: list[int], raw: bytes) -> list[bytes]:
    """BYTES elements from their binary form: a 4-byte little-endian length, then the bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidRequest(f"input {name!r}: a BYTES element's length is cut short")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidRequest(f"input {name!r}: a BYTES element is cut short")
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != element_count(shape):
        raise InvalidRequest(
            f"input {name!r}: shape {shape} needs {element_count(shape)} elements, "
            f"got {len(elements)}"
        )
    return elements


def serialize_bytes(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def raw_contents(tensor: Tensor) -> bytes:
    """A tensor's binary form (FP32 little-endian; BYTES length-prefixed)."""
    if isinstance(tensor.data, np.ndarray):
        return np.ascontiguousarray(tensor.data, dtype="<f4").tobytes()
    return serialize_bytes(tensor.data)
