"""Dialplans: per dialled number, what happens to a call. Pure data and routing, no SIP."""

from gateway.dialplan import model as _model
from gateway.dialplan.loader import flow_texts, load_dialplans
from gateway.dialplan.model import *  # noqa: F403 - the package's face is its model
from gateway.dialplan.store import DialplanStore

__all__ = [*_model.__all__, "DialplanStore", "flow_texts", "load_dialplans"]
