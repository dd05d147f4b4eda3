"""Example price catalogues shipped with wattledger (never applied unless imported by name)."""
