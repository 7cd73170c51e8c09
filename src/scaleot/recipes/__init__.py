"""One recipe per workflow step (``setup -> run -> save``), each exposed as a CLI command."""
