"""Install basicsr_blurfield, a BasicSR plugin for non-uniform blur fields.

Besides the package, the wheel carries ``basicsr_blurfield_hook.pth`` at the root of site-packages. Python runs it
at start-up; it only registers an import hook (no torch import), which loads the plugin the moment ``basicsr`` is
first imported, so BasicSR's own ``basicsr/train.py`` finds our registered names and compat fixes.
"""
import os
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HOOK_PTH = 'basicsr_blurfield_hook.pth'


def _read(name: str) -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), encoding='utf-8') as f:
        return f.read()


class BuildPyWithHook(build_py):
    """Copies the start-up hook ``.pth`` next to the package, at the root of the wheel (site-packages)."""

    def run(self):
        super().run()
        self.copy_file(HOOK_PTH, os.path.join(self.build_lib, HOOK_PTH), preserve_mode=False)


class EditableWheelWithHook(editable_wheel):
    """Editable installs (``pip install -e``) carry the same start-up hook ``.pth``."""

    def _create_wheel_file(self, bdist_wheel):
        wheel_path = super()._create_wheel_file(bdist_wheel)
        import zipfile
        with zipfile.ZipFile(wheel_path, 'a') as wheel:
            wheel.write(HOOK_PTH, HOOK_PTH)
        return wheel_path


setup(
    name='basicsr_blurfield',
    version='0.1.0',
    description='Non-uniform motion-blur fields for BasicSR: estimation, re-blurring, deblurring guidance',
    long_description=_read('README.md'),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['basicsr_blurfield', 'basicsr_blurfield.*']),
    py_modules=['basicsr_blurfield_hook'],
    package_data={'basicsr_blurfield': ['published_results.json', 'reference_models/*.pth']},
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'torchvision',
        'basicsr==1.4.2',
        'mmengine>=0.10',
        'numpy',
        'opencv-python',
        'lmdb',
        'scikit-image',
        'scipy',
        'tqdm',
        'pyyaml',
        'matplotlib',
        'pytorch-msssim',
    ],
    extras_require={'test': ['pytest'], 'video': ['imageio>=2.9', 'imageio-ffmpeg']},
    cmdclass={'build_py': BuildPyWithHook, 'editable_wheel': EditableWheelWithHook},
    license='Apache-2.0',
)
