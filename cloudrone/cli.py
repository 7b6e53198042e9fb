"""The ``cloudrone_cli`` command (filled in by the foundation work)."""


def main() -> None:
    raise SystemExit("cloudrone_cli: not built yet")
