"""Evolution strategies over a population of LoRA adapters (``algorithm.name: es``): the driver, the engines' and
the learner's parts. The pure functions (noise from seeds, normalisation, the update) are in
``rlreason.algorithms.es``."""
