"""``python -m basicsr_blurfield.test -opt X.yml``: BasicSR's test pipeline with the plugin loaded.

Same flags as BasicSR's ``basicsr/test.py`` (``--force_yml`` included); results go to ``results/<name>/`` under the
current directory. Options are checked before anything is built; a wrong option file ends in one ``error: ...`` line
(exit status 2).
"""
import os
import sys


def main() -> None:
    import basicsr_blurfield  # noqa: F401  (registers everything, applies compat)
    from basicsr.test import test_pipeline
    from basicsr_blurfield.option_check import OptionError

    try:
        test_pipeline(os.getcwd())
    except OptionError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
