"""Pictures and tables: sample galleries, Grad-CAM overlay grids, nearest-neighbour panels (DiLo Fig. 2), comparison bar charts and
results tables. Every function returns a matplotlib ``Figure`` (or a pandas ``DataFrame``)."""

from fgssl_lib.viz.cam_grid import cam_grid
from fgssl_lib.viz.charts import comparison_bar_chart, results_table
from fgssl_lib.viz.neighbours import neighbour_panel
from fgssl_lib.viz.samples import sample_gallery, variant_grid

__all__ = ["cam_grid", "comparison_bar_chart", "neighbour_panel", "results_table", "sample_gallery", "variant_grid"]
