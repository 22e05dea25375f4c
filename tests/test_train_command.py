"""`xor-gpu train` loads what it uses (xor_gpu/train_command.py): the training, its report and
its text; not compare's fleet model, the other results, the child processes, nor the figure's
module unless --plot asks for a figure."""
import json
import subprocess
import sys

MOST_MODULES = 14  # import xor_gpu.train_command: the package, the command, and what they use
NOT_LOADED = ("xor_gpu.results.fleet", "xor_gpu.results.check", "xor_gpu.results.parity", "xor_gpu.results.runs",
              "xor_gpu.plots", "xor_gpu.child", "xor_gpu.render_compare", "xor_gpu.host", "xor_gpu.cuda_standin")


def _loaded(code):
    """The xor_gpu modules a fresh Python has loaded after `code`."""
    proc = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys\n"
                           "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'xor_gpu')))"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_the_train_command_loads_at_most_14_modules_of_the_package():
    loaded = _loaded("import xor_gpu.train_command")
    assert len(loaded) <= MOST_MODULES, loaded
    assert not set(NOT_LOADED) & set(loaded)


def test_a_training_loads_the_figures_module_only_with_plot(tmp_path):
    """For real, as the CLI runs it: without --plot no figure module and no fleet model;
    with --plot the figure's module too."""
    run = "from xor_gpu import cli\nassert cli.main(['train', '--steps', '20'{plot}]) == 0"
    plain = _loaded(run.format(plot=""))
    assert "xor_gpu.train_command" in plain and not {"xor_gpu.plots", "xor_gpu.results.fleet"} & set(plain)
    plotted = _loaded(run.format(plot=f", '--plot', {str(tmp_path / 'loss.png')!r}"))
    assert "xor_gpu.plots" in plotted and (tmp_path / "loss.png").stat().st_size > 0
