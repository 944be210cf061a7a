"""The simulated driver: a site that boots nothing, keeping its nodes in a JSON file — a
test and capacity-planning aid, never used by the demo. See :mod:`.driver`."""

from pcc.drivers.simulated.driver import NATIVE_STATES, SimulatedDriver
from pcc.drivers.simulated.settings import SimulatedSettings

__all__ = ["NATIVE_STATES", "SimulatedDriver", "SimulatedSettings"]
