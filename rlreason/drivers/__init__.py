"""Drivers: one small loop per mode over the shared stages of ``rlreason.controller``. ``train`` (the run session
and the synchronous loop, checkpoints, resume), ``async_rollouts`` (rollout.mode async), ``online`` (a growing
stream), ``continual`` (task phases), ``es`` (evolution strategies)."""
