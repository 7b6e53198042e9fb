"""Cloudrone: micro clouds in the sky.

The package holds both halves of the suite: what runs on the controller
(``cli``, ``mission``, ``fleet``, ``runner``) and what runs on a drone
(``olsr``, ``flight``).
"""

__version__ = "0.1.0"
