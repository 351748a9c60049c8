"""``python -m basicsr_blurfield.test -opt X.yml``: BasicSR's test pipeline with the plugin loaded.

Same flags as BasicSR's ``basicsr/test.py``; results go to ``results/<name>/`` under the current directory.
"""
import os

import basicsr_blurfield  # noqa: F401  (registers everything, applies compat)
from basicsr.test import test_pipeline


def main() -> None:
    test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
