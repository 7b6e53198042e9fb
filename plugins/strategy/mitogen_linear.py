"""Ansible's linear strategy, with Mitogen carrying the work to the drones.

Each drone keeps one Python interpreter for the whole run, reached over the
one SSH connection: a module is a call in that interpreter instead of a new
Python process that unpacks the module and compiles Ansible's module
utilities again. A run that changes nothing spends most of its time there
(docs/bench/mission.md). Named in ansible.cfg; `ANSIBLE_STRATEGY=linear`
runs the plain strategy instead.
"""

import ansible_mitogen.loaders
import ansible_mitogen.strategy

_Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
    """Task by task across the fleet, as `linear`, over Mitogen's connections."""
