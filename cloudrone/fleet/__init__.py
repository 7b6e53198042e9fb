"""cloudrone.fleet"""
