"""The compiled kernels: the featuriser's (``featurise.pyx``) and the duplicate check's
(``duplicates.pyx``), C extensions written in Cython and built by the package's own build (``setup.py``):
``pip install`` and ``pip install -e`` compile them, and a worker imports them like any module.
"""
