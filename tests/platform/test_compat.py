"""Each compat fix is needed (the upstream behaviour fails without it) and works (it passes with it).

The "without" half runs in a fresh interpreter with the start-up hook disabled (``BASICSR_BLURFIELD_NO_HOOK=1``), so
BasicSR is exactly upstream there. Tests that need CUDA semantics are not possible here; the fixes dispatch to the
upstream functions whenever CUDA is available (checked by reading the dispatch in ``test_fixes_defer_to_upstream``).
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import basicsr_blurfield
from basicsr_blurfield import compat

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only failure modes')


def run_python(code: str, hook: bool = False, cwd=None, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop('BASICSR_BLURFIELD_NO_HOOK', None)
    if not hook:
        env['BASICSR_BLURFIELD_NO_HOOK'] = '1'
    env.update(env_extra or {})
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True,
                          text=True,
                          env=env,
                          cwd=cwd,
                          timeout=120)


def test_torchvision_import_fails_upstream_and_works_after_defining_the_missing_ops():
    upstream = run_python('import torchvision')
    assert upstream.returncode != 0 and 'torchvision::nms does not exist' in upstream.stderr
    fixed = run_python('''
        import basicsr_blurfield_hook
        compat = basicsr_blurfield_hook.load_compat()
        compat.define_missing_torchvision_ops()
        import torchvision, torchvision.ops
        print('ok', torchvision.extension._has_ops())
    ''')
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.split() == ['ok', 'False']


def test_basicsr_import_needs_the_functional_tensor_shim():
    without_shim = run_python('''
        import basicsr_blurfield_hook
        compat = basicsr_blurfield_hook.load_compat()
        compat.define_missing_torchvision_ops()
        import basicsr
    ''')
    assert without_shim.returncode != 0 and 'functional_tensor' in without_shim.stderr
    with_shim = run_python('''
        import basicsr_blurfield_hook
        compat = basicsr_blurfield_hook.load_compat()
        compat.prepare_imports()
        import basicsr
        from torchvision.transforms.functional_tensor import rgb_to_grayscale
        import torch
        print(float(rgb_to_grayscale(torch.ones(3, 2, 2)).mean()))
    ''')
    assert with_shim.returncode == 0, with_shim.stderr
    assert abs(float(with_shim.stdout.split()[-1]) - (0.2989 + 0.587 + 0.114)) < 1e-6  # BT.601 weights


def _write_state(tmp_path, name='resume_me', iteration=7):
    folder = tmp_path / 'experiments' / name / 'training_states'
    folder.mkdir(parents=True)
    state = {'epoch': 1, 'iter': iteration, 'optimizers': [], 'schedulers': []}
    torch.save(state, folder / f'{iteration}.state')
    torch.save(dict(state, iter=3), folder / '3.state')
    return folder


RESUME_CODE = '''
    import basicsr_blurfield_hook
    compat = basicsr_blurfield_hook.load_compat()
    compat.prepare_imports()
    import basicsr.train
    {patch}
    opt = {{'auto_resume': True, 'name': 'resume_me', 'root_path': {root!r}, 'num_gpu': 0,
            'path': {{'resume_state': None}}}}
    state = basicsr.train.load_resume_state(opt)
    print('resumed', None if state is None else state['iter'])
'''


def test_auto_resume_upstream_fails_on_cpu_and_searches_the_cwd(tmp_path):
    _write_state(tmp_path)
    upstream_from_root = run_python(RESUME_CODE.format(patch='', root=str(tmp_path)), cwd=str(tmp_path))
    assert upstream_from_root.returncode != 0  # torch.cuda.current_device() on a CPU torch
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    upstream_elsewhere = run_python(RESUME_CODE.format(patch='', root=str(tmp_path)), cwd=str(elsewhere))
    assert upstream_elsewhere.stdout.split() == ['resumed', 'None']  # looked in elsewhere/experiments


def test_auto_resume_fixed_loads_the_latest_state_on_cpu_from_the_root_path(tmp_path):
    _write_state(tmp_path)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    fixed = run_python(RESUME_CODE.format(patch='compat.patch_resume()', root=str(tmp_path)), cwd=str(elsewhere))
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.split() == ['resumed', '7']


def test_fixed_resume_reports_a_missing_state_file(tmp_path):
    opt = {'auto_resume': False, 'name': 'x', 'root_path': str(tmp_path), 'num_gpu': 0,
           'path': {'resume_state': str(tmp_path / 'nope.state')}}
    with pytest.raises(FileNotFoundError, match='no training state at'):
        compat.load_resume_state(opt)


DIST_CODE = '''
    import basicsr_blurfield_hook
    compat = basicsr_blurfield_hook.load_compat()
    compat.prepare_imports()
    {patch}
    import torch
    from basicsr.utils import dist_util
    from basicsr.models.base_model import BaseModel
    dist_util.init_dist('pytorch')
    model = BaseModel({{'num_gpu': 0, 'is_train': False, 'dist': True}})
    net = model.model_to_device(torch.nn.Linear(2, 1))
    print(type(net).__name__, torch.distributed.get_backend())
'''
DIST_ENV = {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': '29531'}


def test_distributed_init_upstream_fails_without_cuda():
    upstream = run_python(DIST_CODE.format(patch=''), env_extra=DIST_ENV)
    assert upstream.returncode != 0


def test_distributed_init_fixed_uses_gloo_and_cpu_ddp():
    fixed = run_python(DIST_CODE.format(patch='compat.patch_distributed()'),
                       env_extra=dict(DIST_ENV, MASTER_PORT='29532'))
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.split()[-2:] == ['DistributedDataParallel', 'gloo']


def test_cuda_prefetch_without_cuda_gives_a_clear_error():
    from basicsr.data.prefetch_dataloader import CUDAPrefetcher
    with pytest.raises(ValueError, match="prefetch_mode is 'cuda'.*use prefetch_mode: cpu"):
        CUDAPrefetcher([], {'num_gpu': 0})
    upstream = run_python('''
        import basicsr_blurfield_hook
        compat = basicsr_blurfield_hook.load_compat()
        compat.prepare_imports()
        from basicsr.data.prefetch_dataloader import CUDAPrefetcher
        try:
            CUDAPrefetcher([], {'num_gpu': 0})
        except ValueError:
            print('clear')
        except Exception as error:
            print('unclear', type(error).__name__)
    ''')
    assert upstream.stdout.split()[0] == 'unclear'


def test_unknown_registry_name_lists_the_choices():
    from basicsr.losses import build_loss
    with pytest.raises(KeyError, match=r"No object named 'PSNRLos'.*Did you mean \['PSNRLoss'.*Registered names"):
        build_loss({'type': 'PSNRLos'})
    from basicsr.utils.registry import LOSS_REGISTRY
    assert LOSS_REGISTRY.get('PSNRLoss').__name__ == 'PSNRLoss'


def test_apply_all_is_idempotent():
    import basicsr.train
    import basicsr.utils.dist_util as dist_util
    import basicsr.utils.options as options
    from basicsr.models.base_model import BaseModel
    from basicsr.utils.registry import Registry
    before = (options.parse_options, dist_util.init_dist, BaseModel.model_to_device, Registry.get,
              basicsr.train.load_resume_state, dist_util._upstream_init_dist)
    compat.apply_all()
    compat.apply_all()
    after = (options.parse_options, dist_util.init_dist, BaseModel.model_to_device, Registry.get,
             basicsr.train.load_resume_state, dist_util._upstream_init_dist)
    assert before == after


def test_fixes_defer_to_upstream_when_cuda_is_available(monkeypatch):
    import basicsr.utils.dist_util as dist_util
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(dist_util, '_upstream_init_dist', lambda *args, **kwargs: calls.append((args, kwargs)))
    compat.init_dist('pytorch', backend='nccl')
    assert calls == [(('pytorch', 'nccl'), {})]


def test_startup_hook_loads_the_plugin_with_basicsr_and_imports_no_torch_at_start():
    at_start = run_python('import sys; print("torch" in sys.modules, "basicsr_blurfield" in sys.modules)', hook=True)
    assert at_start.stdout.split() == ['False', 'False'], at_start.stderr
    with_basicsr = run_python('''
        import basicsr
        from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY, DATASET_REGISTRY
        import basicsr.train
        print('PSNRLoss' in LOSS_REGISTRY, 'DeblurModel' in MODEL_REGISTRY, 'PairedBlurDataset' in DATASET_REGISTRY,
              basicsr.train.load_resume_state.__module__)
    ''', hook=True)
    assert with_basicsr.returncode == 0, with_basicsr.stderr
    assert with_basicsr.stdout.split() == ['True', 'True', 'True', 'basicsr_blurfield.compat']
    assert basicsr_blurfield.__version__


def test_the_builders_are_replaced_everywhere_basicsr_imported_them():
    import basicsr.archs
    import basicsr.losses
    import basicsr.models.sr_model
    assert basicsr.archs.build_network is compat.build_network is basicsr.models.sr_model.build_network
    assert basicsr.losses.build_loss is compat.build_loss is basicsr.models.sr_model.build_loss


def test_parse_options_checks_the_options_before_returning(tmp_path, monkeypatch):
    import basicsr.train
    import basicsr.utils.options as options
    from basicsr_blurfield.option_check import OptionError
    option = {'name': 'x', 'model_type': 'DeblurModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
              'datasets': {}, 'path': {}, 'network_g': {'type': 'NAFNet', 'widht': 8}}
    (tmp_path / 'x.yml').write_text(__import__('yaml').safe_dump(option))
    monkeypatch.setattr(sys, 'argv', ['test.py', '-opt', str(tmp_path / 'x.yml')])
    assert basicsr.train.parse_options is options.parse_options
    with pytest.raises(OptionError, match=r"network_g \(NAFNet\): unknown option 'widht' \(did you mean 'width'\?\)"):
        options.parse_options(str(tmp_path), is_train=False)
