"""RadAISegmentLib: the Slicer-free engine of RadAISegment.

Images and their geometry (:mod:`.image`, :mod:`.geometry`), reading and writing
(:mod:`.io`, :mod:`.dicom`), model cards and loaders, inference, saliency and
training. Never imports ``slicer``, ``qt`` or ``ctk``; the MRML bridge lives in
:mod:`.mrml` and imports only MRML classes.
"""
__version__ = "0.1.0"
