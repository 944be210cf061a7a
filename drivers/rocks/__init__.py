"""The Rocks driver (KVM roll, Rocks 6.2): PCC clusters as Rocks virtual clusters, made and
run with the ``rocks`` command. See :mod:`.driver`."""

from pcc.drivers.rocks.driver import NATIVE_STATES, RocksDriver
from pcc.drivers.rocks.settings import RocksSettings

__all__ = ["NATIVE_STATES", "RocksDriver", "RocksSettings"]
