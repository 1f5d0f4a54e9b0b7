"""Environments: multi-turn episodes in which the model acts and the environment answers.

An environment is a small class registered by name, like a verifier::

    from rlreason.envs import Environment, StepResult, environment

    @environment("guess")
    class Guess(Environment):
        stop = ("?",)  # a model turn ends at EOS or at one of these strings (a tool call's closing tag)

        def reset(self, problem):  # the first observation: text, or chat messages
            self.secret, self.tries = int(problem.reference), 0
            return problem.prompt

        def step(self, action):  # the model's turn, as text
            ...
            return StepResult(observation=" higher\n")  # or StepResult(reward=1.0, done=True)

A new instance serves each episode (``__init__`` takes the recipe's ``config:`` mapping as keywords). ``reset`` must
give the same first observation for every episode of one problem. Tools are plain typed Python functions with
docstrings (``rlreason.envs.tools``). Recipes name an environment in a task (``tasks.train: [{env: guess}]``, or
``{env: python_tool, data: gsm8k}``); ``module:Class`` and the ``rlreason.envs`` entry-point group work as for
verifiers. The episode loop that runs them lives in the engines (``rlreason.rollout.episodes``): every driver,
evaluation and comparison gets environments through the same ``generate`` call.
"""

from rlreason.envs.base import (ENV_REWARD, ENVIRONMENTS, Environment, Observation, StepResult,  # noqa: F401
                                environment, get_environment)
from rlreason.envs import agent, calculator, code_repair, guess, python_tool, team  # noqa: E402,F401  (built-ins register)
from rlreason.envs.tasks import EnvTaskSpec  # noqa: E402

for _name in ("calculator", "guess"):  # their own problems are tasks of the same name: tasks.train: [calculator]
    EnvTaskSpec(env=_name)
