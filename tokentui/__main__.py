"""`python -m tokentui` runs the CLI."""

from tokentui.cli import main

if __name__ == "__main__":
    main()
