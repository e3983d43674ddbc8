"""The QNN execution provider from onnxruntime-qnn: registration, session options,
context-binary compilation. Shared by the android-qnn compiler target and the
qnn-htp-sim runtime backend.

onnxruntime-qnn is a plugin EP: its library (with Qualcomm's QAIRT libraries beside
it, the HTP backend included) is registered once per process with onnxruntime, then
added to a session for the Qualcomm device it reports. On x86-64 the HTP backend
runs the Hexagon tensor processor in emulation."""
from __future__ import annotations

import os
from pathlib import Path

from edge4k.backends.qnn.soc import Soc
from edge4k.errors import Edge4KError
from edge4k.optional import missing
from edge4k.stderr import captured_native_output

_registered: str | None = None


def require_qnn() -> dict[str, str]:
    """Import onnxruntime + onnxruntime-qnn and register the QNN EP; returns their versions."""
    global _registered
    try:
        import onnx
        import onnxruntime as ort
        import onnxruntime_qnn
    except ImportError as e:
        raise missing("the android-qnn target", "onnxruntime_qnn", e) from None
    if _registered is None:
        name = onnxruntime_qnn.get_ep_name()
        if not any(d.ep_name == name for d in ort.get_ep_devices()):
            try:
                ort.register_execution_provider_library(name, onnxruntime_qnn.get_library_path())
            except Exception as e:  # onnxruntime raises its own Fail/RuntimeError types
                raise Edge4KError(f"onnxruntime cannot load the QNN execution provider "
                                  f"({onnxruntime_qnn.get_library_path()}): {e}") from None
        _registered = name
    from onnxruntime_qnn import build_and_package_info as info
    return {"onnxruntime": ort.__version__, "onnxruntime_qnn": onnxruntime_qnn.__version__,
            "qairt": info.qnn_version, "onnx": onnx.__version__}


def _qnn_devices():
    import onnxruntime as ort
    devices = [d for d in ort.get_ep_devices() if d.ep_name == _registered]
    if not devices:
        raise Edge4KError("the QNN execution provider reports no device on this machine")
    return devices


def session_options(soc: Soc, *, threads: int | None = None, **provider):
    """Session options that put a model on the QNN HTP backend for `soc` (emulated on x86)."""
    import onnxruntime as ort

    require_qnn()
    so = ort.SessionOptions()
    so.log_severity_level = 3            # the EP logs notes at warning level on every session
    if threads:
        so.intra_op_num_threads = threads
    options = {"backend_type": "htp", "soc_model": str(soc.soc_model), "htp_arch": str(soc.htp_arch),
               # let the HTP quantise its own float inputs and dequantise its outputs, so
               # a stage is one context binary with no Q/DQ nodes left on the CPU
               "offload_graph_io_quantization": "0", **{k: str(v) for k, v in provider.items()}}
    so.add_provider_for_devices(_qnn_devices(), options)
    return so


def compile_context(qdq_model: Path, out: Path, soc: Soc) -> None:
    """Compile a QDQ ONNX model into an EPContext model whose embedded context
    binary targets `soc`; nodes the HTP does not take stay as ONNX nodes (CPU)."""
    import onnxruntime as ort

    so = session_options(soc)
    try:
        with captured_native_output():   # QAIRT's libraries print loader notes on the C stdout
            ort.ModelCompiler(so, os.fspath(qdq_model), embed_compiled_data_into_model=True).compile_to_file(
                os.fspath(out))
    except Exception as e:
        raise Edge4KError(f"QNN cannot compile {qdq_model.name} for {soc.name}: {_first_line(e)}") from None


def htp_session(model: Path, soc: Soc, *, threads: int | None = None):
    import onnxruntime as ort

    so = session_options(soc, threads=threads)
    try:
        with captured_native_output():
            return ort.InferenceSession(os.fspath(model), so)
    except Exception as e:
        raise Edge4KError(f"the QNN HTP backend cannot load {model}: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
