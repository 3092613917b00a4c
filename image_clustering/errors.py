"""The one exception type the command-line tool turns into a one-line message."""


class ImgclustError(Exception):
    """A problem the user can fix (bad config, missing weights, no images); the message names the
    file or config key involved and is shown without a traceback."""
