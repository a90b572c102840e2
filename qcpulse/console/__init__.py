"""The quality department's web console (``GET /``) and the offline API docs.

Other packages may import only what is listed here.
"""

from qcpulse.console.router import router

__all__ = ["router"]
