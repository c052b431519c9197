"""Library functions behind the commands for the people around the worker: read files, produce, tail,
predict offline, the demo.
"""
