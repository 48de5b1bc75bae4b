"""Pictures and tables: sample galleries, view galleries and the view explorer, Grad-CAM overlay grids,
nearest-neighbour panels (DiLo Fig. 2), comparison bar charts and results tables. Every function returns a matplotlib
``Figure`` (or a pandas ``DataFrame``; the explorer an ipywidgets panel where widgets can render); every image is drawn
by :func:`~fgssl_lib.viz.images.show_image`."""

from fgssl_lib.viz.cam_grid import cam_grid
from fgssl_lib.viz.charts import comparison_bar_chart, results_table, spread_chart
from fgssl_lib.viz.explorer import explore
from fgssl_lib.viz.gallery import default_generators, show_gallery
from fgssl_lib.viz.images import draw_box, show_image
from fgssl_lib.viz.neighbours import neighbour_panel
from fgssl_lib.viz.samples import sample_gallery, variant_grid

__all__ = ["cam_grid", "comparison_bar_chart", "default_generators", "draw_box", "explore", "neighbour_panel",
           "results_table", "sample_gallery", "show_gallery", "show_image", "spread_chart", "variant_grid"]
