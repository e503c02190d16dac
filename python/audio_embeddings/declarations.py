"""The one declaration of an option: :class:`Option` and the checks its values go through.

A leaf (it imports nothing of the package): backends, the shared stages (alignment, the engine's
window rules, the device) and the front ends all declare and read options with it, from one
declaration the command-line flag, the loader's keyword, the resume fingerprint and the MATLAB
name-value pair follow.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal


_SWITCH_WORDS = {"true": True, "1": True, "on": True, "yes": True, "false": False, "0": False, "off": False, "no": False}


@dataclass(frozen=True)
class Option:
    """One option a backend (or a shared stage) declares, once.

    From this one declaration come the command-line flag (and its ``--help`` group), the
    keyword argument the loader gets, the resume fingerprint and the MATLAB name-value pair.

    Attributes
    ----------
    flag : str
        Command-line flag, e.g. ``"--hop-seconds"``.
    dest : str
        Keyword argument of the backend's ``load`` (and attribute of the parsed arguments).
    help : str
        One line for ``--help``.
    type : callable or None
        Text -> value; raises ValueError with a message that completes "<name> must be ...".
        None makes a switch: the flag alone sets ``const``.
    default : object
        Value when not given; None leaves the backend's own default.
    const : object
        Value a switch sets.
    choices : tuple, optional
    metavar : str, optional
    affects : {"numbers", "outputs", "elsewhere"}
        Whether the option changes the embeddings themselves, only what is written into the output
        folder (both go into its resume fingerprint), or only what is written elsewhere (a database
        with its own settings and stamps, such as ``--hoplite-db``: not in the folder's fingerprint).
    matlab : str, optional
        MATLAB name-value name (default: the flag in CamelCase, ``--hop-seconds`` -> ``HopSeconds``).
    reads_file : bool
        The value names a file whose contents make the outputs (an events file, a species list, an
        earlier bundle): the resume fingerprint records the file's SHA-256 beside its path, so an
        edited file is noticed as an edited input is.
    """

    flag: str
    dest: str
    help: str
    type: Callable[[str], Any] | None = str
    default: Any = None
    const: Any = True
    choices: tuple | None = None
    metavar: str | None = None
    affects: Literal["numbers", "outputs", "elsewhere"] = "numbers"
    matlab: str | None = None
    reads_file: bool = False

    @property
    def matlab_name(self) -> str:
        """Name of the option in the MATLAB wrappers."""
        if self.matlab:
            return self.matlab
        return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]+", self.flag.lstrip("-")) if part)

    @property
    def is_switch(self) -> bool:
        return self.type is None

    def convert(self, text: Any) -> Any:
        """Parse a value given as text (a MATLAB name-value pair, a config file).

        Raises
        ------
        ValueError
            The text is not a valid value; the message completes "<name> must be ...".
        """
        if self.is_switch:
            word = str(text).strip().lower()
            if word not in _SWITCH_WORDS:
                raise ValueError("true or false")
            return self.const if _SWITCH_WORDS[word] else self.default
        try:
            value = self.type(str(text))
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise ValueError(str(exc) or f"a valid value, not {text!r}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"one of {', '.join(map(str, self.choices))}, not {text!r}")
        return value

    def add_to(self, parser: Any) -> None:
        """Add this option to an argparse parser or argument group."""
        if self.is_switch:
            parser.add_argument(self.flag, dest=self.dest, action="store_const", const=self.const,
                                default=self.default, help=self.help)
            return

        def parse(text: str) -> Any:
            try:
                return self.convert(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(f"must be {exc}") from None

        parse.__name__ = self.dest
        parser.add_argument(self.flag, dest=self.dest, type=parse, default=self.default, metavar=self.metavar,
                            help=self.help)


def finite_float(text: str) -> float:
    """Option type: any finite number (seconds may be negative, a cosine threshold too)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"a finite number, not {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """Option type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"a number >= 0, not {text!r}") from None
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"a number >= 0, not {text!r}")
    return value


def positive_int(text: str) -> int:
    """Option type: an integer > 0."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"an integer > 0, not {text!r}") from None
    if value < 1:
        raise ValueError(f"an integer > 0, not {text!r}")
    return value


def positive_float(text: str) -> float:
    """Option type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"a number > 0, not {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"a number > 0, not {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """Option type: an integer >= 0."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"an integer >= 0, not {text!r}") from None
    if value < 0:
        raise ValueError(f"an integer >= 0, not {text!r}")
    return value


def layers_spec(text: str) -> str:
    """Option type for ``--layers``: ``last``, ``all`` or comma-separated indices (checked, kept as text)."""
    value = str(text).strip().lower().replace(" ", "")
    if value in ("last", "all") or re.fullmatch(r"\d+(,\d+)*", value):
        return value
    raise ValueError(f"'last', 'all' or comma-separated layer indices such as 1,3, not {text!r}")
