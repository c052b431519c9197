"""The worker's hot path, in the order a message goes through it: hot_path (consume a micro-batch) ->
pipeline (the batch's steps, and scoring) -> decode (bytes to an event or a dead letter) -> dedup (an id
seen recently keeps its outcome) -> route (thresholds, top-k, author tags) -> encode (outcome to output
records) -> hot_path (produce, acknowledgements, offsets).
"""
