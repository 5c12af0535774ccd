import logging

from app.redact import RedactingFilter, add_secret, redact


def test_url_credentials_are_masked():
    out = redact("opening rtsp://admin:s3cr3t@192.0.2.1:554/stream1 and http://token@cam/x.mjpg")
    assert "s3cr3t" not in out and "admin" not in out and "token@" not in out
    assert "rtsp://***@192.0.2.1:554/stream1" in out


def test_registered_secret_is_masked_everywhere():
    add_secret("qdrant-key-xyz")
    assert redact("api_key=qdrant-key-xyz failed") == "api_key=*** failed"


def test_logging_filter_masks_formatted_args(caplog):
    logger = logging.getLogger("facestream.test.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="facestream.test.redact"):
        logger.info("lost %s", "rtsp://u:hunter22@host/s")
    assert "hunter22" not in caplog.text and "rtsp://***@host/s" in caplog.text
