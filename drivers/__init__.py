"""VM-provisioner drivers used by the site tool `pragma`: one module per back-end behind one
``Driver`` interface (built in the site-tool issue)."""
