"""Help that states each option's default: one formatter for every parser, so an option added later gets it too."""

from __future__ import annotations

import argparse


def has_default(action: argparse.Action) -> bool:
    """True when the option has a default worth stating (not None, off, empty or suppressed)."""
    d = action.default
    if d is None or d is False or d is argparse.SUPPRESS:
        return False
    return not (isinstance(d, (str, list, tuple)) and len(d) == 0)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help unless the help already names that default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not text or not has_default(action) or "%(default)" in text:
            return text
        if "default" in text and str(action.default) in text:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose help states defaults; sub-parsers inherit the class (argparse's parser_class)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
