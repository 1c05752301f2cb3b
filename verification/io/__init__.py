"""Input and output: the command-line machinery (argument types, dispatch) and the reports of a run (JSON, Markdown,
console; the HTML page, :mod:`verification.io.html`; JUnit XML, :mod:`verification.io.junit`)."""
