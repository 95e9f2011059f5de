"""Which fitter runs a PYME ``Analysis.FitModule``.

pyme-desk fits one model, the 2-D integrated Gaussian on a flat background (Poisson MLE, sCMOS
aware).  It accepts the PYME module names whose model that is:

* ``LatGaussFitFR``: the model on the CPU, or on the GPU when ``Analysis.FitBackend`` is
  ``"auto"`` and a CUDA GPU with pycuda is usable here (``"cpu"``, the default, keeps it on
  the CPU; PYME's own workers ignore the key and run their CPU fit);
* ``GPULatGaussFitFR`` (a pyme-desk name): the same model on the GPU; a task fails with a
  clear message where no GPU is usable.

Other modules (astigmatic, interpolated-PSF, splitter/multiview, fiducial fits, ...) are
refused with :class:`UnsupportedFitModule` naming what is supported.
"""
from __future__ import annotations

from typing import Any, Mapping

CPU_MODULE = "LatGaussFitFR"
GPU_MODULE = "GPULatGaussFitFR"
SUPPORTED_MODULES = (CPU_MODULE, GPU_MODULE)
BACKENDS = ("cpu", "gpu", "auto")


class UnsupportedFitModule(ValueError):
    """The metadata asks for a fit this package does not provide."""


def fit_backend(metadata: Mapping[str, Any]) -> str:
    """``"cpu"`` or ``"gpu"``: where the fits of this analysis run on this machine."""
    module = metadata.get("Analysis.FitModule")
    if not module:
        raise UnsupportedFitModule("the analysis metadata has no Analysis.FitModule "
                                   f"(use one of {', '.join(SUPPORTED_MODULES)})")
    if module == GPU_MODULE:
        return "gpu"
    if module != CPU_MODULE:
        raise UnsupportedFitModule(
            f"fit module {module!r} is not supported by pyme-desk; supported: "
            f"{CPU_MODULE} (2-D Gaussian, CPU or auto GPU) and {GPU_MODULE} (2-D Gaussian, GPU). "
            "Run other PYME fit modules with PYME's own workers")
    backend = str(metadata.get("Analysis.FitBackend", "cpu")).lower()
    if backend not in BACKENDS:
        raise UnsupportedFitModule(f"Analysis.FitBackend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "auto":
        from pyme_desk.analysis.fit_gpu import gpu_available

        return "gpu" if gpu_available()[0] else "cpu"
    return backend


def module_for_backend(backend: str) -> tuple[str, str]:
    """``(Analysis.FitModule, Analysis.FitBackend)`` to write for a ``--fit`` choice."""
    if backend == "gpu":
        return GPU_MODULE, "gpu"
    if backend in ("cpu", "auto"):
        return CPU_MODULE, backend
    raise UnsupportedFitModule(f"--fit must be one of {', '.join(BACKENDS)}, not {backend!r}")
