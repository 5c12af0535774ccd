"""The web app and REST API over a running pipeline, served from the display process (it has the drawn frames).

``WebServer`` (server.py) runs uvicorn in a thread; ``LiveView`` (live.py) holds what the display hands it: the
latest pictures per stream, the stats, and the recent faces (recent.py). The face library itself lives behind
``app.library`` (the gallery's owner answers over its control channel); this package only calls it.
"""
