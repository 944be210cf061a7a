"""Pure code shared by every PCC program: names, keys, TOML reading, time formats, file
locks and the site protocol. Imports none of htcondor, paramiko, libvirt, apscheduler,
sqlite-utils or prometheus-client, so the site tool installs without them."""
