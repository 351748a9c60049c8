"""FlowPriorModel keeps one best-NLL record per validation set (a second set used to raise KeyError)."""
from types import SimpleNamespace

from basicsr_blurfield.models.flow_prior_model import FlowPriorModel


def test_best_nll_is_tracked_per_validation_set():
    model = SimpleNamespace()
    FlowPriorModel._initialize_best_metric_results(model, 'kernels-a')
    model.best_metric_results['kernels-a']['nll'].update(val=1.5, iter=10)
    FlowPriorModel._initialize_best_metric_results(model, 'kernels-b')
    FlowPriorModel._initialize_best_metric_results(model, 'kernels-a')
    assert model.best_metric_results['kernels-a']['nll'] == {'better': 'lower', 'val': 1.5, 'iter': 10}
    assert model.best_metric_results['kernels-b']['nll'] == {'better': 'lower', 'val': float('inf'), 'iter': -1}


def _tiny_flow_prior_model(dequantize_amplitude: float):
    from basicsr.models import build_model

    opt = {
        'name': 'flow_val', 'model_type': 'FlowPriorModel', 'num_gpu': 0, 'is_train': False, 'dist': False, 'rank': 0,
        'world_size': 1, 'manual_seed': 3, 'path': {'pretrain_network_g': None},
        'network_g': {'type': 'KernelFlowPrior', 'kernel_size': 5, 'num_block': 2, 'hidden_size': 8},
        'train': {'dequantize': dequantize_amplitude}, 'val': {}
    }
    return build_model(opt)


class _Loader(list):
    dataset = SimpleNamespace(opt={'name': 'kernels'})


def test_validation_scores_kernels_dequantised_with_a_fixed_seed():
    import torch

    from basicsr_blurfield.models.flow_prior_model import dequantize

    torch.manual_seed(0)
    kernels = torch.zeros(6, 1, 5, 5)
    kernels[:, 0, 2, 1:4] = 1 / 3  # exactly-zero taps, as generated kernels have
    loader = _Loader([{'kernel': kernels[:3]}, {'kernel': kernels[3:]}])
    model = _tiny_flow_prior_model(1e-3)
    model.nondist_validation(loader, 1, None, False)
    first = model.metric_results['nll']
    model.nondist_validation(loader, 2, None, False)
    assert model.metric_results['nll'] == first  # the same noise at every validation
    generator = torch.Generator().manual_seed(3)
    prior = model.net_g.eval()
    with torch.no_grad():
        expected = sum(float(-prior(dequantize(batch['kernel'], 1e-3, generator)).sum()) for batch in loader)
        clean = float(-prior(kernels).sum())
    assert abs(first - expected / 6 / 25) < 1e-5
    assert abs(first - clean / 6 / 25) > 1e-3  # clean kernels would score differently
