"""The figures in imgs/ are exactly what the code draws today."""

import pathlib
import runpy

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402

IMGS = pathlib.Path(__file__).resolve().parents[1] / "imgs"


def test_committed_figures_match_the_code(tmp_path):
    script = runpy.run_path(str(IMGS / "make_figures.py"))
    script["main"](tmp_path)
    for name in script["FIGURES"]:
        committed, fresh = mpimg.imread(IMGS / name), mpimg.imread(tmp_path / name)
        assert committed.shape == fresh.shape, f"{name}: run `make figures` and commit the result"
        assert np.abs(committed - fresh).max() < 0.05, f"{name}: run `make figures` and commit"
