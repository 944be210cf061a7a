"""The demo site of `make run` and the helpers that tests and benches share: real sshd
sites, libvirt sessions and controllers under test, all on loopback addresses."""
