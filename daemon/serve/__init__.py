"""What the daemon serves over the network: the HTTP API (app.py) and its server (server.py)."""
