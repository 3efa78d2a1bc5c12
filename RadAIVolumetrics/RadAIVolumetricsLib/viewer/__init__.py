"""Interactive 3D viewer for reports and `radai view`: NiiVue (vendored, BSD-2-Clause) in a self-contained page.

* :class:`ViewerCase` — an image with an optional segmentation and saliency map on its grid.
* :func:`viewer_block` — one viewer's HTML (data embedded); :func:`head_tags` / :func:`body_scripts` — what a
  page holding viewers needs once (CSP, style, scripts).
* :func:`write_viewer_page` — a standalone page of viewers, written atomically.
"""
from .page import body_scripts, head_tags, viewer_block, viewer_page_html, write_viewer_page
from .volumes import DEFAULT_MAX_VOXELS, ViewerCase, case_payload

__all__ = ["DEFAULT_MAX_VOXELS", "ViewerCase", "body_scripts", "case_payload", "head_tags", "viewer_block",
           "viewer_page_html", "write_viewer_page"]
