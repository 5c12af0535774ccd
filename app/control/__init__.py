"""The control channel: framed JSON requests to the running pipeline's gallery owner over a Unix socket."""
