"""Measurement plumbing shared by the benchmark scripts (no maths of their own).

Each case runs in a fresh child process, so its time and peak memory are not mixed with the cases before it:
:func:`run_child` re-runs a script with ``--child <json payload>`` and reads the JSON line it prints last
(:func:`time_and_peak_cells` formats its time and peak memory for a Markdown table);
:func:`run_spawned` calls a function in a ``spawn`` process that puts its result on a queue. :func:`status_bytes`
reads the process's own ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes. :func:`training_steps` is the
training loop of the short-run benchmarks (one step = ``feed_data``, ``optimize_parameters``, ``update_learning_rate``).

The scripts import this file as ``_common`` (the benchmarks folder is put first on ``sys.path``).
"""
import json
import multiprocessing as mp
import subprocess
import sys
from typing import Callable, Iterator


def status_bytes(key: str) -> int:
    """A ``/proc/self/status`` figure of this process in bytes, e.g. ``'VmRSS'`` (resident) or ``'VmHWM'`` (peak)."""
    with open('/proc/self/status') as handle:
        for line in handle:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'{key} not found in /proc/self/status')


def run_child(script: str, payload: dict, threads: int) -> dict:
    """Runs ``python <script> --child <payload as JSON> --threads <threads>`` and returns the JSON of its last line;
    a failed child gives ``{'skipped': 'failed (exit N): <last stderr line>'}``."""
    cmd = [sys.executable, script, '--child', json.dumps(payload), '--threads', str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {'skipped': f'failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}'}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_and_peak_cells(result: dict) -> tuple:
    """Table cells ``(seconds, peak MiB)`` of a :func:`run_child` result (``seconds``, ``peak_bytes``), or
    ``(reason, '-')`` for a skipped one."""
    if 'skipped' in result:
        return result['skipped'], '-'
    return f"{result['seconds']:.3f}", f"{result['peak_bytes'] / 2**20:.0f}"


def run_spawned(target: Callable, *args):
    """Calls ``target(*args, queue)`` in a fresh ``spawn`` process and returns what it put on ``queue``."""
    context = mp.get_context('spawn')
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def training_steps(model, loader, iterations: int) -> Iterator[int]:
    """Trains ``model`` (a BasicSR model) for ``iterations`` steps over ``loader`` (cycled), yielding each step number
    (1, 2, ...) after its update."""
    step = 0
    while step < iterations:
        for batch in loader:
            step += 1
            model.feed_data(batch)
            model.optimize_parameters(step)
            model.update_learning_rate(step)
            yield step
            if step == iterations:
                return
