"""RadAIVolumetricsLib: the Slicer-free engine of RadAIVolumetrics.

Shape and intensity measures, cardiac (ejection-fraction-style) measures,
longitudinal comparison, validation metrics, reports, batch processing and the
``radai`` command line. Never imports ``slicer``, ``qt`` or ``ctk``.
"""
__version__ = "0.1.0"
