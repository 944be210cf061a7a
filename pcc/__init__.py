"""PCC, the Personal Cloud Controller: reservations of virtual clusters at federated sites,
run as HTCondor work."""

__version__ = "0.1.0"
