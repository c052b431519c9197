"""The featuriser's and duplicate check's compiled kernels: where they are loaded from, and their
build.
"""
