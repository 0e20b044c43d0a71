"""Build-time checks of the serving image: no torch, and onnxruntime-gpu fits the base's CUDA."""

import importlib.util
import os
import sys

from onnxruntime.capi import build_and_package_info as ort_build

if importlib.util.find_spec("torch") is not None:
    sys.exit("torch is installed in the serving image; `pip install .` must not pull it in")

base_cuda = os.environ.get("CUDA_VERSION", "")  # set by nvidia/cuda images, e.g. "13.0.1"
ort_cuda = getattr(ort_build, "cuda_version", "")  # e.g. "13.0"; empty for a CPU build
if base_cuda and ort_cuda and base_cuda.split(".")[0] != ort_cuda.split(".")[0]:
    sys.exit(
        f"onnxruntime-gpu {ort_build.__version__} needs CUDA {ort_cuda}, but the base image has "
        f"CUDA {base_cuda}: pick a BASE_IMAGE with CUDA {ort_cuda.split('.')[0]}.x"
    )
ort = f"onnxruntime {ort_build.__version__} (CUDA {ort_cuda or 'none'})"
sys.stdout.write(f"{ort} on a base with CUDA {base_cuda or 'none'}\n")
