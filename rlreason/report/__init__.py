"""What a person sees of a run: the console (progress line, tables, warnings), the metrics log (JSONL,
TensorBoard, memory), experiment trackers, and the continual-learning accuracy matrix and report."""
