"""Staff alerts: rules over named analytics values → alert lifecycle events on the `alerts` stream, plus the
staff page and the `ack_alert` command handler. See docs/ALERTS.md."""
from edge.alerts.commands import ack_command_handler
from edge.alerts.config import METRICS, AlertConfigError, AlertRule, AlertsConfig
from edge.alerts.engine import AlertEngine, AlertError, InvalidTransition, Outcome, UnknownAlert
from edge.alerts.values import MetricKey, Reading, Values

__all__ = ["METRICS", "AlertConfigError", "AlertEngine", "AlertError", "AlertRule", "AlertsConfig", "InvalidTransition",
           "MetricKey", "Outcome", "Reading", "UnknownAlert", "Values", "ack_command_handler"]
