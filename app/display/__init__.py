"""Showing results: drawing (annotate), the window, the video file, the track log (the web app's pictures: app/web)."""
