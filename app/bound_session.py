"""Session runs by IO binding: each run's input is copied into a host buffer allocated once and
reused (pinned, page-locked memory on CUDA, so the host-to-device copy can go by DMA), and the
outputs are bound on the session's device and copied back once the run ends.

On the CPU provider the same code path runs (device "cpu"), which is how it is tested here.
"""

from __future__ import annotations

import logging
import queue
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

Device = Literal["cpu", "cuda"]


def pinned_host_buffer(shape: tuple[int, ...], provider: str) -> tuple[np.ndarray, Any] | None:
    """A float32 host array in page-locked memory that `provider` can copy from directly, and
    the onnxruntime value that owns it; None when the provider offers no such memory."""
    for device in ort.get_ep_devices():
        if device.ep_name != provider:
            continue
        memory = device.memory_info(ort.OrtDeviceMemoryType.HOST_ACCESSIBLE)
        if memory is None:
            continue
        owner = ort.OrtValue.ortvalue_from_shape_and_type(
            list(shape), np.float32, memory_info=memory
        )
        return owner.numpy(), owner
    return None


class BoundSession:
    """`run(batch)` through IO binding; up to `slots` runs at once (one host buffer each)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        input_name: str,
        output_names: tuple[str, ...],
        max_batch_size: int,
        input_shape: tuple[int, ...],
        device: Device = "cpu",
        device_id: int = 0,
        slots: int = 1,
    ) -> None:
        self._session = session
        self._input_name = input_name
        self._output_names = output_names
        self._device: Device = device
        self._device_id = device_id
        self._owners: list[Any] = []  # keep pinned memory alive as long as its arrays
        self._buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        shape = (max_batch_size, *input_shape)
        self.pinned = False
        for _ in range(slots):
            pinned = (
                pinned_host_buffer(shape, session.get_providers()[0]) if device != "cpu" else None
            )
            if pinned is not None:
                buffer, owner = pinned
                self._owners.append(owner)
                self.pinned = True
            else:
                buffer = np.empty(shape, dtype=np.float32)
            self._buffers.put(buffer)
        if device != "cpu" and not self.pinned:
            log.info(
                "IO binding: %s offers no pinned host memory; the input buffer is pageable",
                session.get_providers()[0],
            )

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        """(B, ...) float32, B <= max_batch_size -> the outputs, each (B, ...), on the host."""
        buffer = self._buffers.get()  # blocks only if more runs than slots are in flight
        try:
            if len(batch) > len(buffer) or batch.shape[1:] != buffer.shape[1:]:
                raise ValueError(
                    f"a batch of shape {batch.shape} does not fit the input buffer {buffer.shape}"
                )
            rows = buffer[: len(batch)]
            np.copyto(rows, batch, casting="same_kind")
            binding = self._session.io_binding()
            binding.bind_input(
                self._input_name, "cpu", 0, np.float32, list(rows.shape), rows.ctypes.data
            )
            for name in self._output_names:
                binding.bind_output(name, self._device, self._device_id)
            self._session.run_with_iobinding(binding)
            return tuple(np.asarray(output) for output in binding.copy_outputs_to_cpu())
        finally:
            self._buffers.put(buffer)


class CudaGraphSession:
    """CUDA graphs (`VITSERVE_CUDA_GRAPHS`): one graph per bucketed batch size, captured on its
    first run (warm-up). A graph replays fixed device addresses, so each bucket owns device
    input and output tensors; a run copies the batch into its bucket's input and replays.
    Batches must come padded to a bucket size. Not run here (no GPU): see docs/performance.md."""

    def __init__(
        self,
        session: ort.InferenceSession,
        input_name: str,
        output_shapes: dict[str, tuple[int, ...]],
        bucket_sizes: tuple[int, ...],
        input_shape: tuple[int, ...],
        device_id: int = 0,
    ) -> None:
        self._session = session
        self._bindings: dict[int, tuple[Any, Any, list[Any], Any]] = {}
        for graph_id, size in enumerate(bucket_sizes):
            device_input = ort.OrtValue.ortvalue_from_shape_and_type(
                [size, *input_shape], np.float32, "cuda", device_id
            )
            outputs = [
                ort.OrtValue.ortvalue_from_shape_and_type(
                    [size, *shape], np.float32, "cuda", device_id
                )
                for shape in output_shapes.values()
            ]
            binding = session.io_binding()
            binding.bind_ortvalue_input(input_name, device_input)
            for name, value in zip(output_shapes, outputs, strict=True):
                binding.bind_ortvalue_output(name, value)
            options = ort.RunOptions()
            options.add_run_config_entry("gpu_graph_id", str(graph_id))
            self._bindings[size] = (binding, device_input, outputs, options)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        """(bucket size, ...) float32 -> the outputs, on the host."""
        if len(batch) not in self._bindings:
            raise ValueError(f"a batch of {len(batch)} is no bucket size ({list(self._bindings)})")
        binding, device_input, outputs, options = self._bindings[len(batch)]
        device_input.update_inplace(np.ascontiguousarray(batch, dtype=np.float32))
        self._session.run_with_iobinding(binding, options)
        return tuple(value.numpy() for value in outputs)
