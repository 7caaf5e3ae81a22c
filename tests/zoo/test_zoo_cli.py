"""The zoo command line trains, lists and describes, and reports errors with exit status 2."""

from zoo.cli.zoo import main


def test_train_prints_the_trajectory_and_resumes_to_a_no_op(tmp_path, capsys):
    argv = ["train", "--model", "mlp2?in_features=32", "--width", "8", "--num-classes", "4", "--data",
            "synthetic", "--epochs", "1", "--lr", "0.1", "--seed", "0", "--out", str(tmp_path / "r"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "model zoo:mlp2?in_features=32&width=8&num_classes=4, 2 checkpoints, complete=True" in out
    assert "epoch_1" in out
    assert main(argv) == 0


def test_models_and_data(capsys):
    assert main(["models"]) == 0 and "zoo:conv8(width" in capsys.readouterr().out
    assert main(["data", "synthetic"]) == 0 and "train 512, val 128, test 128" in capsys.readouterr().out


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["data", "cifar10", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: CIFAR-10 not found") and "Traceback" not in err
    argv = ["train", "--model", "mlp2", "--data", "synthetic", "--epochs", "1", "--lr", "0.1", "--seed", "0",
            "--out", str(tmp_path / "r"), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "does not accept synthetic inputs of shape (32,)" in capsys.readouterr().err
