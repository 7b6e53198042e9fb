"""The relief camp's own services: small, standard library only, for a Pi 2."""
