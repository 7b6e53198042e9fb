"""cloudrone.olsr"""
