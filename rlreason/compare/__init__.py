"""Comparing runs: ``rlreason compare`` (every algorithm x seed of a recipe, resumable), ``rlreason report``
(the same report for any finished runs): statistics over seeds, plots, and ScaleRL curve fits."""
