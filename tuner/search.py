"""Search strategies: Optuna samplers driven through ask/tell, behind one Protocol."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from schedules import ChoiceKnob, Config, SplitKnob

OPTUNA_SAMPLERS = ("tpe", "random")


@dataclass
class Proposal:
    config: Config
    handle: object = None   # the strategy's own bookkeeping (an Optuna trial)
    predicted: float | None = None   # the cost model's score, when a model ranked it


class SearchStrategy(Protocol):
    """Proposes configs and learns from their measurements. A cost-model strategy ranks a
    large pool before proposing; plain samplers propose directly."""

    name: str

    def propose(self, n: int) -> list:
        """Up to n new Proposals (fewer when the space is exhausted)."""

    def observe(self, proposal: Proposal, seconds: float | None, error: str | None) -> None:
        """Report a measurement; seconds is None when the candidate failed."""

    def skip(self, proposal: Proposal) -> None:
        """Drop a proposal that will not be measured (already measured, or a duplicate)."""


def distributions(space) -> dict:
    """Optuna distributions: one categorical per choice knob, one per split-knob level."""
    from optuna.distributions import CategoricalDistribution
    out = {}
    for k in space.knobs:
        if isinstance(k, ChoiceKnob):
            out[k.name] = CategoricalDistribution(list(k.choices))
        else:
            for level in range(k.parts):
                out[f"{k.name}#{level}"] = CategoricalDistribution(list(k.candidates(level)))
    return out


def config_from_params(space, params: dict) -> Config:
    """A legal config from sampled parameters; split factors are shrunk to fit the extent."""
    values = {}
    for k in space.knobs:
        if isinstance(k, ChoiceKnob):
            values[k.name] = params[k.name]
            continue
        factors, budget = [0] * k.parts, k.extent
        for level in reversed(range(k.parts)):   # innermost first, as SplitKnob.sample does
            want = params[f"{k.name}#{level}"]
            allowed = [f for f in k.candidates(level) if f <= budget]
            factors[level] = max(f for f in allowed if f <= want) if want > budget else want
            budget //= factors[level]
        values[k.name] = tuple(factors)
    return Config(values)


def params_from_config(space, config: Config) -> dict:
    params = {}
    for k in space.knobs:
        if isinstance(k, SplitKnob):
            for level, f in enumerate(config[k.name]):
                params[f"{k.name}#{level}"] = f
        else:
            params[k.name] = config[k.name]
    return params


class OptunaStrategy:
    """TPE or random sampling over the space, persisted in an Optuna study."""

    def __init__(self, space, strategy: str, seed: int, storage=None, study_name: str | None = None):
        import optuna
        if strategy not in OPTUNA_SAMPLERS:
            raise ValueError(f"unknown Optuna sampler {strategy!r}; choose one of {', '.join(OPTUNA_SAMPLERS)}")
        optuna.logging.set_verbosity(logging.WARNING)
        self.name = strategy
        self.space = space
        self.dists = distributions(space)
        sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, multivariate=True)
                   if strategy == "tpe" else optuna.samplers.RandomSampler(seed=seed))
        from .migrations import retry_on_race

        def create():
            # Optuna creates its tables on first use; two tuning processes may race on that.
            store = optuna.storages.RDBStorage(storage) if isinstance(storage, str) else storage
            return optuna.create_study(storage=store, study_name=study_name, sampler=sampler,
                                       direction="minimize", load_if_exists=True)
        self.study = retry_on_race(create)

    def warm_start(self, measured) -> None:
        """Tell the study about (config, seconds) pairs it has not seen, e.g. after a restart."""
        import optuna
        from optuna.trial import TrialState
        known = {config_from_params(self.space, t.params) for t in self.study.get_trials(deepcopy=False)
                 if t.state in (TrialState.COMPLETE, TrialState.FAIL) and set(t.params) == set(self.dists)}
        for config, seconds in measured:
            if config in known:
                continue
            trial = optuna.trial.create_trial(
                params=params_from_config(self.space, config), distributions=self.dists,
                value=seconds, state=TrialState.COMPLETE if seconds is not None else TrialState.FAIL)
            self.study.add_trial(trial)

    def propose(self, n: int) -> list:
        out = []
        for _ in range(n):
            trial = self.study.ask(self.dists)
            out.append(Proposal(config_from_params(self.space, trial.params), trial))
        return out

    def observe(self, proposal: Proposal, seconds, error) -> None:
        from optuna.trial import TrialState
        if proposal.handle is None:  # proposed outside the study (uniform fallback)
            self.warm_start([(proposal.config, seconds)])
            return
        if seconds is None:
            self.study.tell(proposal.handle, state=TrialState.FAIL)
        else:
            self.study.tell(proposal.handle, seconds)

    def skip(self, proposal: Proposal) -> None:
        from optuna.trial import TrialState
        self.study.tell(proposal.handle, state=TrialState.PRUNED)
