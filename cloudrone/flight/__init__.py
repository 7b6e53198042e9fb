"""cloudrone.flight"""
