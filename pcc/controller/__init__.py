"""The controller: settings, the reservation model, admission, the store, the service (the
only door for every interface), views, the site client, the reconcile loop and its
scheduled companions (probes, orphans, gauges, notices), metrics and `pcc serve`."""
