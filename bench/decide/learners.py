"""The learners compared, all driven through AUIE's public policy API.

Every learner gets the same JSON contexts through the same :class:`Featurizer` (the one a
decision point builds from its :class:`DecisionPointConfig`): AUIE's policies read its
vectors, the Vowpal Wabbit policy (:mod:`auie.decide.policies.vw`) turns the same flattened
features into ADF text. VW learners run without AUIE's exploration floor (pure VW).

VW's ``--squarecb`` and ε-greedy configurations get ``-q sa`` (context × action-id
features, i.e. one linear model per action, what AUIE's per-action ridge models are);
Personalizer's default configuration already has ``-q ::``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auie.decide.config import DecisionPointConfig
from auie.decide.features import Featurizer
from auie.decide.policies import Policy, make_policy
from auie.decide.policies.vw import DEFAULT_ARGS

VW_SQUARECB = "--cb_explore_adf --squarecb -q sa"
VW_EPSILON = "--cb_explore_adf --epsilon 0.05 -q sa"
VW_GREEDY = "--cb_explore_adf --epsilon 0 -q sa"


@dataclass(frozen=True)
class Learner:
    name: str
    #: ``None``: the decision point's configured policy (DecisionPointConfig's default).
    policy: dict[str, Any] | None = None
    vw: bool = False
    features: dict[str, Any] = field(default_factory=dict)

    def build(self, actions: list[str], seed: int) -> tuple[Featurizer, Policy]:
        """The featurizer and a fresh policy, as a decision point with these actions and
        the default configuration (plus ``features``) builds them."""
        config = DecisionPointConfig.model_validate(
            {"actions": [{"id": a} for a in actions], "features": self.features}
        )
        policy_config = dict(self.policy or config.policy)
        floor = 0.0 if self.vw else config.exploration_floor
        featurizer = Featurizer(
            config.features.context_dim,
            config.action_dim,
            interactions=config.features.interactions,
            hashed_fraction=config.features.hashed_fraction,
        )
        policy = make_policy(
            {**policy_config, "exploration_floor": floor},
            context_dim=config.features.context_dim,
            action_dim=config.action_dim,
            seed=seed,
        )
        return featurizer, policy

    def describe(self) -> str:
        if self.policy is None:
            config = DecisionPointConfig()
            return f"{config.policy} floor {config.exploration_floor}"
        if self.vw:
            return f"vw {self.policy['args']}"
        return f"{self.policy} floor {DecisionPointConfig().exploration_floor}"


AUIE_DEFAULT = Learner("auie-default")
AUIE = [
    AUIE_DEFAULT,
    Learner("auie-linucb", {"type": "linucb"}),
    Learner("auie-thompson", {"type": "thompson"}),
    Learner("auie-squarecb", {"type": "squarecb"}),
    Learner("auie-epsilon-greedy", {"type": "epsilon_greedy"}),
]
VW_SQUARE = Learner("vw-squarecb", {"type": "vw", "args": VW_SQUARECB}, vw=True)
VW_EPS = Learner("vw-epsilon-0.05", {"type": "vw", "args": VW_EPSILON}, vw=True)
PERSONALIZER = Learner("personalizer-default", {"type": "vw", "args": DEFAULT_ARGS}, vw=True)
VW_GREEDY_LEARNER = Learner("vw-greedy", {"type": "vw", "args": VW_GREEDY}, vw=True)

SYNTHETIC = [*AUIE, VW_SQUARE, VW_EPS, PERSONALIZER]
DIGITS = [AUIE_DEFAULT, VW_GREEDY_LEARNER, VW_SQUARE]
BY_NAME = {learner.name: learner for learner in [*SYNTHETIC, VW_GREEDY_LEARNER]}
