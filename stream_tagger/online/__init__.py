"""Online evaluation: what tells the team how the model does. attach wires it to a worker: batch
observers (observers, drift, duplicates, shadow), the feedback join and its precision/recall, hot
reload (model_watch), the promotion gate.
"""
