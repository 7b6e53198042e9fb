"""cloudrone.mission"""
