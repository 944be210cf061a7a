"""PCC's door to HTCondor: the adapter over the bindings, the embedded pool, and the
reservation DAG. With the job code, the only users of the bindings."""
