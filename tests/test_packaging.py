"""The wheel: it carries the web page, and installed on its own (not the editable checkout) it runs."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_page_and_predicts_when_installed(tmp_path, trained_model):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("emovision-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for page in ("index.html", "app.js", "style.css"):
        assert f"emovision/serve/static/{page}" in names
    assert not any(name.startswith("tests/") for name in names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import emovision; print(emovision.__file__)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target))  # the installed wheel, not the checkout
    help_text = subprocess.run(
        [sys.executable, "-m", "emovision.cli", "--help"], env=env, capture_output=True, text=True
    )
    assert help_text.returncode == 0 and "predict" in help_text.stdout
    predicted = subprocess.run(
        [sys.executable, "-m", "emovision.cli", "predict", str(trained_model.checkpoint), str(trained_model.test_wavs[0]), "--json", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    assert '"emotion"' in predicted.stdout
