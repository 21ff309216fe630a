"""The doors: the command line, batches and the server (with its studio page), each a thin layer over the chain."""
