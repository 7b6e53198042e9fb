#!/usr/bin/env python3
"""Run the Cloudrone CLI from a checkout: ``python cloudrone_cli.py ...``."""

from cloudrone.cli import main

if __name__ == "__main__":
    main()
