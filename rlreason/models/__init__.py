"""Models: facts read from a model directory's small files (``info``: context limit, chat template, LoRA-servable
layers), the embedded tiny model and its pretraining (``tiny``), GGUF conversion (``gguf``: SmolLM2 from its
wheel), folding adapters into the base (``merge``) and counting prompt tokens in the driver (``tokens``)."""
