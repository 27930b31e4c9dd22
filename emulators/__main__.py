"""Command line entry point of the sandbox emulators (filled in by the emulators' work)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("emulators CLI not implemented yet")


if __name__ == "__main__":
    main()
