"""The camera's embedded preview (rawpy's extract_thumb): `edge4k thumb RAW -o preview.jpg`."""
from __future__ import annotations

import io
import os

import rawpy
from PIL import Image

from edge4k.errors import RawInputError
from edge4k.files import atomic_output, check_output
from edge4k.kernels.raw import libraw_words
from edge4k.stderr import captured_native_stderr


def extract_thumb(source, output: str | os.PathLike | None = None, *, mkdir: bool = False) -> bytes:
    """The preview as encoded bytes (JPEG as the camera stored it, or a bitmap encoded as PNG);
    with `output`, also written there: .jpg keeps a JPEG's bytes, .png/.tif re-encode."""
    is_path = not isinstance(source, (bytes, bytearray, memoryview))
    name = os.fspath(source) if is_path else f"<{len(source)} bytes>"
    ext = os.path.splitext(os.fspath(output))[1].lower() if output is not None else None
    if ext not in (None, ".jpg", ".jpeg", ".png", ".tif", ".tiff"):
        raise RawInputError(f"unsupported preview format '{ext}' for {output}; use .jpg, .png or .tif")
    if is_path and os.path.isdir(name):
        raise RawInputError(f"{name} is a folder, not a RAW file")
    if is_path and not os.path.isfile(name):
        raise RawInputError(f"input not found: {name}")
    if output is not None:
        check_output(output, mkdir=mkdir)
    with captured_native_stderr():
        try:
            with rawpy.imread(name if is_path else io.BytesIO(bytes(source))) as raw:
                thumb = raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError) as e:
            raise RawInputError(f"{name}: {libraw_words(e)}") from None
        except rawpy.LibRawError as e:
            raise RawInputError(f"cannot read RAW file {name}: {libraw_words(e)}") from None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        data, image = bytes(thumb.data), None
    else:
        image = Image.fromarray(thumb.data)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        data = buffer.getvalue()
    if output is None:
        return data
    with atomic_output(output) as tmp:
        if ext in (".jpg", ".jpeg") and image is None:
            tmp.write_bytes(data)
        else:
            with Image.open(io.BytesIO(data)) as im:
                im.convert("RGB").save(tmp, {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(ext, "TIFF"),
                                       **({"quality": 95} if ext in (".jpg", ".jpeg") else {}))
    return data
