"""Real clients of PDND and ANPR, written to the official contracts in ../shared/specs/."""
