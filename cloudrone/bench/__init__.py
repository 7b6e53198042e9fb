"""cloudrone.bench"""
