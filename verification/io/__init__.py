"""Input and output: the command-line machinery (argument types, dispatch) and the reports."""
