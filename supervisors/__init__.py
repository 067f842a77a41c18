"""troupe.supervisors: supervision policy, backoff, supervisors of actors and processes."""

from troupe.backoff import Backoff, BackoffState, Jitter

from . import observe_tree  # noqa: F401  (registers the observer's tree section)
from .errors import LinkFailed, RestartIntensityExceeded, SupervisorRequestError
from .links import link, linked, unlink
from .policy import (
    Decider,
    Directive,
    RestartIntensity,
    RestartPlan,
    RestartTracker,
    RestartType,
    Strategy,
    children_to_restart,
    decider,
    default_decider,
    plan_restart,
    should_restart,
)
from .process_hooks import ChildHooks, ProcessHooks
from .process_spec import ProcessSpec
from .process_supervisor import ChildState, ChildStatus, ProcessSupervisor, ProcessTreeFailed
from .process_target import TargetError
from .spec import ChildSpec, SupervisorSpec
from .supervisor import (
    ChildInfo,
    Supervisor,
    start_child,
    start_supervisor,
    terminate_child,
    which_children,
)
from .tree import TreeNode, format_tree, live_tree

__all__ = [
    "Backoff",
    "BackoffState",
    "ChildHooks",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "ChildStatus",
    "Decider",
    "Directive",
    "Jitter",
    "LinkFailed",
    "ProcessHooks",
    "ProcessSpec",
    "ProcessSupervisor",
    "ProcessTreeFailed",
    "RestartIntensity",
    "RestartIntensityExceeded",
    "RestartPlan",
    "RestartTracker",
    "RestartType",
    "Strategy",
    "Supervisor",
    "SupervisorRequestError",
    "SupervisorSpec",
    "TargetError",
    "TreeNode",
    "children_to_restart",
    "decider",
    "default_decider",
    "format_tree",
    "link",
    "linked",
    "live_tree",
    "plan_restart",
    "should_restart",
    "start_child",
    "start_supervisor",
    "terminate_child",
    "unlink",
    "which_children",
]
