"""The entry points that PCC's HTCondor jobs run (`pcc-job`)."""
