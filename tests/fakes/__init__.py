"""Stand-ins for back-ends that cannot run here (OpenNebula, Rocks), speaking their real
protocols and output formats."""
