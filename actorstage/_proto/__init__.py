"""The protobuf code generated from ``actorstage/protos/`` by ``make protos``.

This file is the one written by hand (``make protos`` keeps it): it has
betterproto2 imported first, without pydantic (see ``actorstage._betterproto``).
"""

import actorstage._betterproto  # noqa: F401
