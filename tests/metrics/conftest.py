"""Small real photos (scikit-image's bundled CC0 images) with known degradations, shared by the metric tests."""
import cv2
import numpy as np
import pytest
from skimage import data


def small_photo(name: str, size: int = 96) -> np.ndarray:
    """A bundled scikit-image photo downscaled (area interpolation) to size x size, uint8 RGB (H, W, 3)."""
    return cv2.resize(getattr(data, name)(), (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope='session')
def photo():
    """The :func:`small_photo` factory, for tests that need other photos or sizes."""
    return small_photo


@pytest.fixture(scope='session')
def blurred_pair():
    """(gt, blurred) uint8 RGB 96 x 96: the astronaut and a copy blurred by a 7-pixel horizontal box (motion) blur."""
    gt = small_photo('astronaut')
    blurred = cv2.blur(gt, (7, 1), borderType=cv2.BORDER_REFLECT)
    return gt, blurred
