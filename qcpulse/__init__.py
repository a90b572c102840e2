"""qcpulse: live hospital quality indicators (质控指标) and alerts from FHIR R4."""

__version__ = "0.1.0"
