import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch

from fgssl_lib.viz import cam_grid, comparison_bar_chart, neighbour_panel, results_table


def test_cam_grid_has_one_row_per_model_plus_images():
    images = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)
    cams = {"BYOL": torch.rand(4, 16, 16), "CVSA": torch.rand(4, 16, 16)}
    fig = cam_grid(images, cams, boxes=[(2, 2, 10, 10)] * 4)
    assert len(fig.axes) == 3 * 4
    assert fig.axes[4].get_ylabel() == "BYOL"
    with pytest.raises(ValueError, match="image size"):
        cam_grid(images, {"bad": torch.rand(4, 8, 8)})


def test_neighbour_panel_marks_correct_and_wrong_neighbours():
    images = torch.rand(6, 3, 8, 8)
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.3], [0.2, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    fig = neighbour_panel(images[:2], feats[:2], labels[:2], images, feats, labels, k=2, same_set=True)
    assert len(fig.axes) == 2 * 3
    first_row = [ax.spines["left"].get_edgecolor() for ax in fig.axes[1:3]]
    assert first_row[0] == matplotlib.colors.to_rgba("tab:green")  # query 0 -> item 1 (class 0)
    assert first_row[1] == matplotlib.colors.to_rgba("tab:red")  # then item 4 (class 1)


def test_results_table_formats_mean_and_std_and_chart_has_one_bar_per_method_and_metric():
    results = {"BYOL": {"kNN": [50.0, 52.0], "linear": [60.0, 62.0]}, "CVSA": {"kNN": [55.0, 55.0], "linear": 70.0}}
    table = results_table(results)
    assert isinstance(table, pd.DataFrame)
    assert table.loc["BYOL", "kNN"] == "51.0 ± 1.4"
    assert table.loc["CVSA", "linear"] == "70.0"
    assert list(table.columns) == ["kNN", "linear"]
    assert "<table" in table.to_html()
    fig = comparison_bar_chart(results)
    assert len(fig.axes) == 1
    assert len(fig.axes[0].patches) == 4


def test_sample_gallery_and_variant_grid_lay_out_one_panel_per_image():
    from fgssl_lib.viz import sample_gallery, variant_grid

    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    mask = torch.zeros(8, 8, dtype=torch.uint8)
    mask[2:5, 2:6] = 1
    sample = dict(image=image, label=1, box=torch.tensor([2.0, 2.0, 6.0, 5.0]), mask=mask, index=0)
    fig = sample_gallery([sample] * 3, ["a", "b"])
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "b"
    assert len(fig.axes[0].patches) == 1  # the box
    fig = variant_grid({"original": [sample] * 2, "only_fg": [sample] * 2}, indices=(0, 1))
    assert [ax.get_title() for ax in fig.axes] == ["original", "only_fg", "", ""]


def test_show_image_draws_uint8_and_float_images_alike_with_the_mask_contour_and_a_box():
    from matplotlib.figure import Figure

    from fgssl_lib.viz import draw_box, show_image

    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    image[0, 2:6, 2:6] = 255
    mask = torch.zeros(8, 8)
    mask[2:6, 2:6] = 1
    axes = Figure().subplots(1, 2)
    show_image(axes[0], image, mask, title="uint8")
    show_image(axes[1], image.float() / 255, frame=False)
    draw_box(axes[0], (2, 2, 6, 6), "lime")
    assert (axes[0].images[0].get_array() == axes[1].images[0].get_array()).all()
    assert axes[0].get_title() == "uint8" and len(axes[0].collections) == 1 and len(axes[0].patches) == 1
    assert axes[0].axison and not axes[1].axison and list(axes[0].get_xticks()) == []
