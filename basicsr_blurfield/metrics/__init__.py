"""Metrics registered in BasicSR's METRIC_REGISTRY: leaderboard-exact GoPro/HIDE and RealBlur PSNR/SSIM, complexity.

Every non-underscore module here is imported when ``basicsr_blurfield`` is imported, so they stay cheap to import
(mmengine is imported inside the complexity functions). Protocol definitions: ``docs/evaluation.md``.
"""
