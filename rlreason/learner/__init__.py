"""The learner: owns the trainable Hugging Face model and its optimizer; algorithm-blind."""
