"""The image repository format and the sample repository (installed as ``pcc.images``):
the demo site serves it, and ``build_test_image.sh`` builds its tiny test image."""
