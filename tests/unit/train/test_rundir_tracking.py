"""A resume may change what is tracked (report_to, run_name, tracker_project: they steer logging only), and
overwrite_output_dir clears the trackers' files with the rest of the run."""

from conftest import sft_config
from posttrain.train.rundir import changed_settings, prepare_run_dir, run_dir, write_config


def test_tracking_keys_may_change_on_resume_and_overwrite_clears_their_files(tmp_path):
    run = run_dir(tmp_path / "run")
    write_config(run, sft_config(output_dir=str(run.root)))
    resumed = sft_config(output_dir=str(run.root), resume=True, report_to=["tensorboard"], run_name="again", tracker_project="p")
    assert changed_settings(run, resumed) == []
    assert changed_settings(run, sft_config(output_dir=str(run.root), resume=True, learning_rate=0.5)) == ["learning_rate"]

    for name in ("tensorboard", "wandb", "mlruns", "trackio"):
        (run.root / name).mkdir()
    (run.root / "trackers.json").write_text("{}")
    (run.root / "notes.txt").write_text("mine")
    prepare_run_dir(run, sft_config(output_dir=str(run.root), overwrite_output_dir=True))
    assert sorted(p.name for p in run.root.iterdir()) == ["checkpoints", "config.yaml", "notes.txt"]
