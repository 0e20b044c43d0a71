"""The Open Inference Protocol (KServe V2, as Triton speaks it): one protocol-neutral core
(`inference.py`, `metadata.py`), and its two encodings, REST (`rest_codec.py`, served by
app/api/routes/v2.py) and gRPC (`grpc_service.py`)."""
