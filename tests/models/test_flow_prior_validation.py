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
