"""Atomic file writers: every file the package writes goes to a temporary name in the same folder and is then
renamed over the target with ``os.replace``, so an interrupted run never leaves a half-written checkpoint, field,
image or result file (a reader sees the old file or the new one). Pure standard library plus lazy torch / OpenCV.
"""
import contextlib
import os
import secrets
import stat
from typing import Iterator

__all__ = ['atomic_path', 'write_text', 'imwrite', 'torch_save']


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside ``path`` with the same extension (writers that pick the format from the
    extension keep working); renames it to ``path`` when the block succeeds, removes it when the block raises.

    The file gets the permissions a plain ``open(path, 'w')`` would give: a new file ``0o666`` minus the umask, an
    existing one keeps its mode (``tempfile.mkstemp`` alone would make every file private, ``0o600``).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    extension = os.path.splitext(path)[1]
    while True:
        temporary = os.path.join(folder, f'.{os.path.basename(path)}.{secrets.token_hex(4)}.tmp{extension}')
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    os.close(handle)
    try:
        yield temporary
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path: str, text: str) -> None:
    """Writes ``text`` (UTF-8, newlines unchanged) to ``path`` atomically."""
    with atomic_path(path) as temporary, open(temporary, 'w', encoding='utf-8', newline='') as f:
        f.write(text)


def imwrite(path: str, image_bgr) -> None:
    """Writes an OpenCV image (H, W[, 3]) uint8/uint16, BGR order, to ``path`` atomically; raises if OpenCV fails."""
    import cv2

    with atomic_path(path) as temporary:
        try:
            written = cv2.imwrite(temporary, image_bgr)
        except cv2.error as error:
            raise OSError(f'cannot write image {path!r}: {error}') from error
        if not written:
            raise OSError(f'cannot write image {path!r} (unsupported extension or image of shape '
                          f'{getattr(image_bgr, "shape", None)})')


def torch_save(obj, path: str) -> None:
    """``torch.save(obj, path)`` atomically."""
    import torch

    with atomic_path(path) as temporary:
        torch.save(obj, temporary)
