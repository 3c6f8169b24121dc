"""sentlab as a library in a project of its own: `sentlab.init` writes a starter conf/ beside sentlab's configs, and
a wheel built from this checkout, installed into a fresh virtual environment outside the repository, trains that
project's experiment on its own CSV files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

ROWS = ["data.max_samples.train=48", "data.max_samples.val=16", "data.max_samples.test=16"]
QUICK = ["train.epochs=1", "train.batch_size=8", "train.max_length=64", *ROWS]


def test_init_writes_a_starter_that_composes_with_sentlabs_groups(tmp_path, capsys):
    from sentlab import config, init

    assert init.main([str(tmp_path / "mine")]) == 0
    assert "--config-dir conf experiment=my_experiment" in capsys.readouterr().out
    conf = tmp_path / "mine" / "conf"
    assert (tmp_path / "mine" / "data" / "train.csv").is_file() and (tmp_path / "mine" / "data" / "test.csv").is_file()
    assert init.main([str(tmp_path / "mine")]) == 2  # never over a project's own files
    assert "exists" in capsys.readouterr().err

    config.check_group_choices(["--config-dir", str(conf), "experiment=my_experiment"])  # the user's option
    config.check_group_choices([f"hydra.searchpath=[file://{conf}]", "data=my_reviews,demo"])
    with pytest.raises(Exception, match="no option 'mine' in sentlab/conf/experiment/ or .*conf/experiment/"):
        config.check_group_choices([f"--config-dir={conf}", "experiment=mine"])
    cfg = config.compose(
        [f"hydra.searchpath=[file://{conf}]", "experiment=my_experiment"]
    )  # sentlab's, then the user's
    assert (cfg.data.name, cfg.data.dir, cfg.backbone.name, cfg.tracking.experiment) == (
        "my_reviews",
        "data",
        "minilm",
        "my_project",
    )


def _run(*command, cwd=None, env=None) -> str:
    out = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{command}: {out.stdout[-2000:]}{out.stderr[-3000:]}"
    return out.stdout


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_trains_a_users_experiment(tmp_path):
    """The wheel carries sentlab's configs; installed (no dependencies: the running environment's packages are
    reached through a .pth file, so torch is not installed again) it runs a user's experiment on the user's CSV."""
    import mlflow

    source = tmp_path / "source"  # a copy of what the wheel is built from: the checkout gets no build folders
    for name in ("sentlab", "hydra_plugins"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path, source)
    (wheel,) = tmp_path.glob("sentlab-*.whl")
    assert {"sentlab/conf/config.yaml", "sentlab/conf/experiment/lora_sst2.yaml"} <= set(
        zipfile.ZipFile(wheel).namelist()
    )

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    here = sysconfig.get_paths()
    (site / "running_environment.pth").write_text("\n".join(dict.fromkeys([here["purelib"], here["platlib"]])) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # (a checkout on it: pip finds sentlab there)
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel, env=env)

    _run(venv / "bin" / "sentlab-init", "project", cwd=tmp_path, env=env)  # the console script
    project = tmp_path / "project"
    imported = _run(python, "-c", "import sentlab; print(sentlab.__file__)", cwd=project, env=env).strip()
    assert imported.startswith(str(site)), imported  # the wheel's sentlab, not the checkout's

    _run(
        python, "-m", "sentlab.train", "--config-dir", "conf", "experiment=my_experiment", *QUICK, cwd=project, env=env
    )
    client = mlflow.MlflowClient(f"sqlite:///{project}/runs/mlflow.db")
    experiment = client.get_experiment_by_name("my_project")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["sentlab.data"] == "my_reviews" and run.data.params["data.dir"] == "data"
    assert "test_accuracy" in run.data.metrics
