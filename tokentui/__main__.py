"""`python -m tokentui` runs the command line, as the `tokentui` command does."""

from tokentui.launch import main

if __name__ == "__main__":
    main()
