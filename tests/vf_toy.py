"""A ``verifiers`` (v1) environment written with the installed package's own API, for the tests (a top-level
module: verifiers resolves environments by module name). Its reward: the reply contains a digit."""

import verifiers.v1 as vf


class ToyData(vf.TaskData):
    answer: str


class ToyTask(vf.Task[ToyData]):
    @vf.reward(weight=1.0)
    async def has_digit(self, trace: vf.Trace) -> float:
        return float(any(ch.isdigit() for ch in trace.last_reply or ""))


class ToyConfig(vf.TasksetConfig):
    pass


class ToyTaskset(vf.Taskset[ToyTask, ToyConfig]):
    def load(self):
        return [ToyTask(ToyData(prompt=f"{a} + {b} =", answer=str(a + b)), self.config.task)
                for a in range(10, 16) for b in range(3, 9)]


__all__ = ["ToyTaskset"]
