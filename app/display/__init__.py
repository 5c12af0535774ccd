"""Showing results: drawing (annotate), the window, the video file, the MJPEG server, the track log."""
