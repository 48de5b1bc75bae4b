"""Gallery and explorer figures: layout, mask contours, the static fallback and the widget panel."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fgssl_lib.data.sample import box_to_mask  # noqa: E402
from fgssl_lib.views import build_views  # noqa: E402
from fgssl_lib.viz.explorer import STATIC_GRID, explore, interactive_frontend  # noqa: E402
from fgssl_lib.viz.gallery import draws_of, show_gallery  # noqa: E402


@pytest.fixture(scope="module")
def dataset() -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    samples = []
    for index in range(4):
        image = torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8, generator=generator)
        box = torch.tensor([4.0, 3.0, 16.0, 15.0])
        samples.append(dict(image=image, label=index, box=box, mask=box_to_mask(box, 20, 24), index=index))
    return samples


def test_gallery_layout_and_mask_contours(dataset):
    generators = {"rrc": build_views("rrc", 16, seed=0, photometric="none"),
                  "swap": build_views("saliency_swap", 16, dataset=dataset, seed=0, photometric="none")}
    figure = show_gallery(dataset, samples=(0, 2), generators=generators, draws=2)
    assert isinstance(figure, Figure)
    axes = figure.axes
    assert len(axes) == 2 * (2 + 2 * 2)
    swap_axes = [axes[row * 6 + col] for row in range(2) for col in (4, 5)]
    assert all(ax.collections for ax in swap_axes), "every SaliencySwap view has a non-empty mask to outline"
    assert axes[0].patches, "the source shows its box"


def test_gallery_with_a_saliency_source_draws_the_best_box(dataset):
    generators = {"rrc": build_views("rrc", 16, seed=0)}
    figure = show_gallery(dataset, samples=(1,), generators=generators, draws=1, saliency="centre")
    assert len(figure.axes[0].patches) == 2 and len(figure.axes[1].patches) == 1  # ground-truth + best box


def test_draws_differ_and_restore_the_epoch(dataset):
    views = build_views("rrc", 16, seed=0)
    views.set_epoch(5)
    outs = draws_of(views, dataset[0], 3)
    assert not torch.equal(outs[0]["view1"], outs[1]["view1"])
    assert views.epoch == 5


def test_explore_static_fallback(dataset):
    assert not interactive_frontend()  # pytest is not a Jupyter frontend
    figure = explore(dataset, index=1, size=16, draws=2)
    assert isinstance(figure, Figure) and len(figure.axes) == len(STATIC_GRID) * 3


def test_explore_widget_panel(dataset):
    widgets = pytest.importorskip("ipywidgets")
    panel = explore(dataset, size=16, draws=1, interactive=True)
    assert isinstance(panel, widgets.VBox)
    sliders = [w for box in panel.children[:2] for w in box.children]
    assert {w.description for w in sliders} >= {"crop scale", "paste ratio", "p", "blending", "mode"}


def test_gallery_rejects_empty_requests(dataset):
    with pytest.raises(ValueError, match="at least one"):
        show_gallery(dataset, samples=(), draws=1)
