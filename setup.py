"""Builds the compiled ops `cascades._C` from csrc/ and installs the package from projects/cascades.

CPU kernels are always built. CUDA kernels are built when a GPU is visible or FORCE_CUDA=1 (the CUDA
toolkit must then be found through CUDA_HOME or /usr/local/cuda).
"""

import glob
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))


def _find_cuda_home():
    """The toolkit folder holding lib64/libcudart.so; nvcc on PATH may be a wrapper script elsewhere."""
    for candidate in (os.environ.get("CUDA_HOME"), "/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"))):
        if candidate and os.path.exists(os.path.join(candidate, "lib64", "libcudart.so")):
            return candidate
    return None


if "CUDA_HOME" not in os.environ and _find_cuda_home():
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
    os.environ["CUDA_HOME"] = _find_cuda_home()

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _extension():
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/*/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/*/*.cu"))
    with_cuda = (torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1") and CUDA_HOME is not None
    if os.environ.get("FORCE_CUDA") == "1" and CUDA_HOME is None:
        raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME to the folder "
                           "that holds lib64/libcudart.so")
    extra_compile_args = {"cxx": ["-O3", "-fopenmp"]}
    extra_link_args = []
    sanitize = os.environ.get("CASCADES_SANITIZE", "")
    if sanitize not in ("", "address"):
        raise RuntimeError(f"CASCADES_SANITIZE must be unset or 'address', got {sanitize!r}")
    if sanitize:
        # AddressSanitizer build for the out-of-bounds checks (`make test-asan`).
        extra_compile_args["cxx"] = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address", "-fopenmp"]
        extra_link_args = ["-fsanitize=address"]
    if with_cuda:
        if not torch.cuda.is_available():
            # No GPU to query: build for the common data-centre and desktop architectures, plus PTX.
            os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "7.5;8.0;8.6;9.0+PTX")
        extra_compile_args["nvcc"] = ["-O3", "--use_fast_math", "-lineinfo"]
        sources += cuda_sources
    return (CUDAExtension if with_cuda else CppExtension)(
        "cascades._C",
        sources,
        extra_compile_args=extra_compile_args,
        extra_link_args=extra_link_args,
        py_limited_api=True,
    )


class BuildPyWithConfigs(build_py):
    """Copies configs/ into cascades/model_zoo/configs of the built package (as detectron2 ships its
    configs), where cascades.model_zoo looks first: a non-editable install has no repository beside it."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "cascades", "model_zoo", "configs")
        shutil.copytree(os.path.join(ROOT, "configs"), target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(
    name="detectron2-cascades",
    version="0.1.0",
    description="Multi-stage instance segmentation cascades (MNC, SCNet, HTC) for detectron2",
    package_dir={"cascades": "projects/cascades"},
    packages=["cascades"] + ["cascades." + p for p in find_packages("projects/cascades")],
    python_requires=">=3.10",
    license="Apache-2.0",
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension, "build_py": BuildPyWithConfigs},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
