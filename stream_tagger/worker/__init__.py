"""The worker's hot path, in the order a message goes through it: decode (bytes to an event or a dead
letter) -> pipeline (dedup, score, route, encode a micro-batch) -> route (thresholds, top-k, author
tags) -> hot_path (produce, acknowledgements, offsets).
"""
