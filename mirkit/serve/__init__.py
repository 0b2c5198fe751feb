"""`mirkit serve`: an HTTP API and a web page over a trained run and its index."""
