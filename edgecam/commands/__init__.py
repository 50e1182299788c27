"""CLI sub-commands: each module parses its flags and calls into the library."""
