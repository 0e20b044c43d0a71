"""How a ViT is served: an exported model directory behind onnxruntime and FastAPI.

See docs/serving.md.
"""
