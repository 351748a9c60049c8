"""The protocol shared by the three blur-field representations (DESIGN.md, "The core contract: blur fields").

A blur field ``A`` maps a sharp image ``(N, C, H, W)`` to a blurry one of the same shape, in gather form:
``blurry[n, c, y, x] = sum_{i,j} k_{n,y,x}[i, j] * sharp[n, c, y + i - r, x + j - r]`` with ``r = K // 2``, taps outside
the image reading the padded value (``'replicate'``, ``'reflect'`` or ``'zeros'``). ``adjoint`` is its exact transpose,
``<A x, y> = <x, A^T y>``. Fields of batch ``N`` blur images of batch ``N``, sample ``n`` only with its own kernels.
"""
from typing import Dict, Optional

from torch import Tensor

from ._common import check_padding


class BlurField:
    """Base class of :class:`KernelField`, :class:`BasisField` and :class:`OffsetField`.

    Subclasses define ``blur``, ``adjoint``, ``dense``, ``kernels_at`` and ``tensors`` (their own tensors by name,
    used by ``to``, ``save_field`` and ``load_field``).
    """

    def __init__(self, padding: str, batch: int, height: int, width: int):
        self.padding = check_padding(padding)
        self.batch, self.height, self.width = batch, height, width

    def tensors(self) -> Dict[str, Tensor]:
        """The representation's own tensors by constructor argument name."""
        raise NotImplementedError

    def blur(self, sharp: Tensor) -> Tensor:
        """Applies the field. Shape: sharp (N, C, H, W) -> blurry (N, C, H, W)."""
        raise NotImplementedError

    def adjoint(self, image: Tensor) -> Tensor:
        """Applies the exact transpose of :meth:`blur`. Shape: (N, C, H, W) -> (N, C, H, W)."""
        raise NotImplementedError

    def dense(self, kernel_size: Optional[int] = None):
        """Expands to a per-pixel :class:`KernelField`."""
        raise NotImplementedError

    def kernels_at(self, points: Tensor) -> Tensor:
        """Kernels at query points. Shape: points (P, 3) long as (n, y, x) -> (P, K, K)."""
        raise NotImplementedError

    @property
    def dtype(self):
        return next(iter(self.tensors().values())).dtype

    @property
    def device(self):
        return next(iter(self.tensors().values())).device

    def to(self, *args, **kwargs) -> 'BlurField':
        """Returns a field of the same type whose tensors went through ``Tensor.to(*args, **kwargs)``."""
        moved = {name: value.to(*args, **kwargs) for name, value in self.tensors().items()}
        return type(self)(**moved, padding=self.padding, check=False)

    def detach(self) -> 'BlurField':
        """Returns a field of the same type with detached tensors."""
        detached = {name: value.detach() for name, value in self.tensors().items()}
        return type(self)(**detached, padding=self.padding, check=False)

    def __repr__(self) -> str:
        shapes = ', '.join(f'{name}={tuple(value.shape)}' for name, value in self.tensors().items())
        return f'{type(self).__name__}({shapes}, padding={self.padding!r})'
